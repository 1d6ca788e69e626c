/*
 * Prometheus text exposition format (0.0.4): parse the scrapes of several
 * workers and merge them into one exposition for /workers/metrics, with a
 * worker label on every sample, HELP and TYPE once per family and each
 * family's samples kept together.  Broken lines and families whose type
 * clashes between workers are dropped and counted, never passed on: the
 * output must always parse.  Pure logic, no I/O: tests call it directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

static const char *const expo_type_names[EXPO_TYPE_COUNT] = { "untyped",
	"counter", "gauge", "histogram", "summary" };

/* One merged family: its samples are rendered as they are added. */
struct expo_family {
	char *name; /* in the merge's names */
	size_t namelen;
	enum expo_type type;
	char *help; /* escaped as on the wire; NULL until a worker gives one */
	size_t helplen;
	struct buf samples;
};

/* Names chunks are never moved, so that names can point into them. */
#define EXPO_NAMES_CHUNK (64 * 1024)

/*
 * A name some family owns.  A histogram or summary also owns the _sum,
 * _count (and _bucket) names a text parser files under it, so two families
 * that a parser would mix up can never both be rendered.
 */
struct expo_claim {
	struct table_key k; /* the name, in the merge's names */
	struct expo_family *fam;
};

/* What the scrape being added said about one name. */
#define EXPO_LOCAL_TYPE 0x1 /* a TYPE line named it */
#define EXPO_LOCAL_HELP 0x2 /* a HELP line named it */
#define EXPO_LOCAL_DONE 0x4 /* samples resolved: to fam, or dropped */
struct expo_local {
	struct table_key k; /* the name, into the worker's text */
	int flags;
	enum expo_type type;
	const char *help;
	size_t helplen;
	struct expo_family *fam;
};

struct expo_sample {
	const char *name;
	size_t namelen;
	struct expo_label labels[EXPO_LABELS_MAX];
	size_t nlabels;
	const char *value; /* checked, passed on as written */
	size_t valuelen;
	const char *ts; /* NULL when there is none */
	size_t tslen;
};

struct expo_merge {
	/*
	 * The families in first-seen order; past nfamilies up to nalloc, the
	 * ones expo_merge_reset kept with their buffers, for reuse.
	 */
	struct expo_family **families;
	size_t nfamilies;
	size_t nalloc;
	size_t familiescap;

	/* Copies of family, HELP and claimed names, until the next reset. */
	struct buf *names;
	size_t nnames;
	size_t name; /* the chunk being filled */

	struct table claims; /* of struct expo_claim */
	struct table
	    locals; /* of struct expo_local, for the scrape being added */

	struct expo_local *last; /* the last sample's, while it stays put */

	struct buf worker; /* escaped worker label value */
	struct expo_stats *st;
	struct expo_sample sample;
	const char *line; /* the sample line being added */
	expo_edit_fn edit; /* NULL: samples go as they came */
	void *edit_arg;
};

/*
 * The sample names a histogram or summary family owns besides its own.
 * Eager ones are claimed with the family, as a text parser files them
 * under it; _created only once a sample uses it, since client_python gives
 * it a gauge family of its own.
 */
static const struct {
	const char *suffix;
	size_t len;
	int histogram;
	int summary;
	int eager;
} expo_suffixes[] = {
	{ "_bucket", 7, 1, 0, 1 },
	{ "_sum", 4, 1, 1, 1 },
	{ "_count", 6, 1, 1, 1 },
	{ "_created", 8, 1, 1, 0 },
};
#define EXPO_NSUFFIXES (sizeof expo_suffixes / sizeof expo_suffixes[0])

static int
expo_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static const char *
expo_skip_blanks(const char *p, const char *end)
{
	while (p < end && expo_is_blank(*p))
		p++;
	return p;
}

/* Character classes, for the per-byte loops of the parser. */
#define EXPO_C_MSTART 0x01 /* [a-zA-Z_:] */
#define EXPO_C_METRIC 0x02 /* [a-zA-Z0-9_:] */
#define EXPO_C_LSTART 0x04 /* [a-zA-Z_] */
#define EXPO_C_LABEL 0x08 /* [a-zA-Z0-9_] */
#define EXPO_C_QUOTED 0x10 /* ends a run of a label value: " \\ non-ASCII */
/* clang-format off */
static const unsigned char expo_ctype[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3, 0, 0, 0, 0, 0,
	0, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
	15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 0, 16, 0, 0, 15,
	0, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
	15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 0, 0, 0, 0, 0,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
	16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
};
/* clang-format on */

/* Length of the metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or label name
 * ([a-zA-Z_][a-zA-Z0-9_]*) at p; 0 when there is none. */
static size_t
expo_name_len(const char *p, const char *end, int metric)
{
	int first = metric ? EXPO_C_MSTART : EXPO_C_LSTART;
	int rest = metric ? EXPO_C_METRIC : EXPO_C_LABEL;
	const char *s = p;

	if (p == end || !(expo_ctype[(unsigned char)*p] & first))
		return 0;
	for (p++; p < end && (expo_ctype[(unsigned char)*p] & rest); p++)
		;
	return (size_t)(p - s);
}

/* Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF,
 * as Go's utf8.ValidString, which Prometheus applies to label values. */
static int
expo_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, need, k;
	unsigned char c, lo, hi;

	while (i < len) {
		c = s[i++];
		if (c < 0x80)
			continue;
		lo = 0x80;
		hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			need = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return 0;
		if (len - i < need)
			return 0;
		for (k = 0; k < need; k++) {
			c = s[i++];
			if (c < lo || c > hi)
				return 0;
			lo = 0x80;
			hi = 0xbf;
		}
	}
	return 1;
}

/* A copy of s that lives until the next reset, without a malloc each. */
static char *
expo_name_copy(struct expo_merge *m, const char *s, size_t len)
{
	struct buf *b;
	char *p;

	for (;; m->name++) {
		if (m->name == m->nnames) {
			m->names = xreallocarray(m->names, m->nnames + 1,
			    sizeof *m->names);
			b = &m->names[m->nnames++];
			memset(b, 0, sizeof *b);
			buf_reserve(b,
			    len > EXPO_NAMES_CHUNK ? len : EXPO_NAMES_CHUNK);
		}
		b = &m->names[m->name];
		if (b->cap - b->len >= len)
			break;
	}
	p = b->data + b->len;
	if (len != 0)
		memcpy(p, s, len);
	b->len += len;
	return p;
}

/* Gives name to fam unless another family has it: 0, or -1 on a clash. */
static int
expo_claim(struct expo_merge *m, const char *name, size_t len,
    struct expo_family *fam)
{
	struct expo_claim *c;
	int added;

	c = table_add(&m->claims, name, len, &added);
	if (!added)
		return c->fam == fam ? 0 : -1;
	c->k.name = expo_name_copy(m, name, len); /* the same, for longer */
	c->fam = fam;
	return 0;
}

static struct expo_family *
expo_claim_owner(struct expo_merge *m, const char *name, size_t len)
{
	struct expo_claim *c = table_find(&m->claims, name, len);

	return c != NULL ? c->fam : NULL;
}

static int
expo_suffix_owns(size_t i, enum expo_type type)
{
	return (type == EXPO_HISTOGRAM && expo_suffixes[i].histogram) ||
	    (type == EXPO_SUMMARY && expo_suffixes[i].summary);
}

/*
 * The merged family called name, created with its names claimed if it is
 * new; NULL when an earlier worker gave that name (or one the family would
 * own) to a family of another type.
 */
static struct expo_family *
expo_family_get(struct expo_merge *m, const char *name, size_t len,
    enum expo_type type)
{
	struct expo_family *fam;
	char stack[256], *sub;
	size_t i;

	fam = expo_claim_owner(m, name, len);
	if (fam != NULL) {
		if (fam->namelen == len && memcmp(fam->name, name, len) == 0 &&
		    fam->type == type)
			return fam;
		return NULL;
	}

	sub = len + 16 <= sizeof stack ? stack : xmalloc(len + 16);
	memcpy(sub, name, len);
	for (i = 0; i < EXPO_NSUFFIXES; i++) {
		if (!expo_suffix_owns(i, type) || !expo_suffixes[i].eager)
			continue;
		memcpy(sub + len, expo_suffixes[i].suffix,
		    expo_suffixes[i].len);
		if (expo_claim_owner(m, sub, len + expo_suffixes[i].len) !=
		    NULL)
			goto out;
	}

	if (m->nfamilies == m->nalloc) {
		if (m->nalloc == m->familiescap) {
			m->familiescap =
			    m->familiescap != 0 ? m->familiescap * 2 : 64;
			m->families = xreallocarray(m->families, m->familiescap,
			    sizeof *m->families);
		}
		m->families[m->nalloc++] = xcalloc(1, sizeof *fam);
	}
	fam = m->families[m->nfamilies++];
	fam->name = expo_name_copy(m, name, len);
	fam->namelen = len;
	fam->type = type;
	fam->help = NULL;
	fam->helplen = 0;

	expo_claim(m, name, len, fam);
	for (i = 0; i < EXPO_NSUFFIXES; i++) {
		if (!expo_suffix_owns(i, type) || !expo_suffixes[i].eager)
			continue;
		memcpy(sub + len, expo_suffixes[i].suffix,
		    expo_suffixes[i].len);
		expo_claim(m, sub, len + expo_suffixes[i].len, fam);
	}
out:
	if (sub != stack)
		free(sub);
	return fam;
}

/*
 * This scrape's entry for name, added when create is set (which may move
 * every entry: no pointer from before survives it); NULL when absent.
 */
static struct expo_local *
expo_local_get(struct expo_merge *m, const char *name, size_t len, int create)
{
	struct expo_local *l;
	int added;

	if (!create)
		return table_find(&m->locals, name, len);
	l = table_add(&m->locals, name, len, &added);
	if (added)
		m->last = NULL; /* the entries may have moved */
	return l;
}

static void
expo_local_help(struct expo_merge *m, struct expo_local *l)
{
	struct expo_family *fam = l->fam;

	/* Only a family's own HELP: not that of a name it merely owns. */
	if (fam == NULL || fam->help != NULL || l->helplen == 0 ||
	    fam->namelen != l->k.len ||
	    memcmp(fam->name, l->k.name, l->k.len) != 0)
		return;
	fam->help = expo_name_copy(m, l->help, l->helplen);
	fam->helplen = l->helplen;
}

static void
expo_conflict(struct expo_merge *m, const char *name, size_t len)
{
	struct expo_stats *st = m->st;

	if (st->type_conflicts++ == 0)
		snprintf(st->conflict, sizeof st->conflict, "%.*s",
		    (int)(len < sizeof st->conflict ? len
						    : sizeof st->conflict),
		    name);
}

/*
 * The family of this scrape that sample name x belongs to: its own TYPE
 * first, then a histogram or summary declared for its base name, else an
 * untyped family of its own.
 */
static struct expo_local *
expo_local_family(struct expo_merge *m, struct expo_local *x)
{
	struct expo_local *base;
	size_t i, len;

	if (x->flags & EXPO_LOCAL_TYPE)
		return x;
	for (i = 0; i < EXPO_NSUFFIXES; i++) {
		len = expo_suffixes[i].len;
		if (x->k.len <= len ||
		    memcmp(x->k.name + x->k.len - len, expo_suffixes[i].suffix,
			len) != 0)
			continue;
		base = expo_local_get(m, x->k.name, x->k.len - len, 0);
		if (base != NULL && (base->flags & EXPO_LOCAL_TYPE) &&
		    expo_suffix_owns(i, base->type))
			return base;
	}
	return x;
}

static enum expo_type
expo_local_type(const struct expo_local *l)
{
	return (l->flags & EXPO_LOCAL_TYPE) ? l->type : EXPO_UNTYPED;
}

/* Binds sample name x and its family l to a merged family, once per scrape. */
static struct expo_family *
expo_resolve(struct expo_merge *m, struct expo_local *x, struct expo_local *l)
{
	struct expo_family *fam;

	if (!(l->flags & EXPO_LOCAL_DONE)) {
		l->flags |= EXPO_LOCAL_DONE;
		l->fam =
		    expo_family_get(m, l->k.name, l->k.len, expo_local_type(l));
		if (l->fam == NULL)
			expo_conflict(m, l->k.name, l->k.len);
		else if (l->flags & EXPO_LOCAL_HELP)
			expo_local_help(m, l);
	}
	fam = l->fam;
	if (x != l && fam != NULL &&
	    expo_claim(m, x->k.name, x->k.len, fam) != 0) {
		expo_conflict(m, x->k.name, x->k.len);
		fam = NULL;
	}
	x->flags |= EXPO_LOCAL_DONE;
	x->fam = fam;
	return fam;
}

/* Histograms and summaries need le and quantile labels that are floats. */
static int
expo_labels_check(const struct expo_sample *s, enum expo_type type)
{
	const struct expo_label *l;
	const char *want;
	size_t i;

	if (type == EXPO_HISTOGRAM)
		want = "le";
	else if (type == EXPO_SUMMARY)
		want = "quantile";
	else
		return 0;
	for (i = 0; i < s->nlabels; i++) {
		l = &s->labels[i];
		if (l->namelen != strlen(want) ||
		    memcmp(l->name, want, l->namelen) != 0)
			continue;
		if (memchr(l->value, '\\', l->valuelen) != NULL ||
		    value_parse(l->value, l->valuelen) != 0)
			return -1;
	}
	return 0;
}

/* How many "exported_" a sample's own worker label needs to stay unique. */
static size_t
expo_worker_prefixes(const struct expo_sample *s)
{
	static const char prefix[] = "exported_";
	const struct expo_label *l;
	size_t i, k, n, plen = sizeof prefix - 1;
	int taken;

	for (k = 1;; k++) {
		taken = 0;
		for (i = 0; i < s->nlabels && !taken; i++) {
			l = &s->labels[i];
			if (l->namelen != k * plen + 6 ||
			    memcmp(l->name + k * plen, "worker", 6) != 0)
				continue;
			for (n = 0; n < k; n++) {
				if (memcmp(l->name + n * plen, prefix, plen) !=
				    0)
					break;
			}
			taken = n == k;
		}
		if (!taken)
			return k;
	}
}

static void
expo_sample_render(struct expo_merge *m, struct expo_family *fam,
    const struct expo_sample *s)
{
	const struct expo_label *l;
	struct buf *b = &fam->samples;
	size_t i, k, need;
	char *o;

	need = s->namelen + 16 + m->worker.len + s->valuelen + s->tslen + 4;
	for (i = 0; i < s->nlabels; i++)
		need += s->labels[i].namelen + s->labels[i].valuelen + 4;
	need += (EXPO_LABELS_MAX + 1) * 9; /* exported_ prefixes */
	buf_reserve(b, need);

	o = b->data + b->len;
	memcpy(o, s->name, s->namelen);
	o += s->namelen;
	memcpy(o, "{worker=\"", 9);
	o += 9;
	if (m->worker.len != 0)
		memcpy(o, m->worker.data, m->worker.len);
	o += m->worker.len;
	*o++ = '"';
	for (i = 0; i < s->nlabels; i++) {
		l = &s->labels[i];
		*o++ = ',';
		if (l->namelen == 6 && memcmp(l->name, "worker", 6) == 0) {
			for (k = expo_worker_prefixes(s); k > 0; k--) {
				memcpy(o, "exported_", 9);
				o += 9;
			}
		}
		memcpy(o, l->name, l->namelen);
		o += l->namelen;
		*o++ = '=';
		*o++ = '"';
		memcpy(o, l->value, l->valuelen);
		o += l->valuelen;
		*o++ = '"';
	}
	*o++ = '}';
	*o++ = ' ';
	memcpy(o, s->value, s->valuelen);
	o += s->valuelen;
	if (s->ts != NULL) {
		*o++ = ' ';
		memcpy(o, s->ts, s->tslen);
		o += s->tslen;
	}
	*o++ = '\n';
	b->len = (size_t)(o - b->data);
}

/*
 * Asks the merge's edit about sample s of family fam: 1 to drop it, else
 * 0, with s's value replaced when the edit says so.
 */
static int
expo_sample_edit(struct expo_merge *m, struct expo_family *fam,
    struct expo_sample *s)
{
	struct expo_line line;
	const char *value = NULL;
	size_t len = 0;

	line.kind = EXPO_LINE_SAMPLE;
	line.text = m->line;
	line.len = (size_t)(s->value - m->line) + s->valuelen;
	line.family = fam->name;
	line.familylen = fam->namelen;
	line.type = fam->type;
	line.name = s->name;
	line.namelen = s->namelen;
	line.labels = s->labels;
	line.nlabels = s->nlabels;
	line.valuetext = s->value;
	line.valuelen = s->valuelen;
	switch (m->edit(m->edit_arg, &line, &value, &len)) {
	case EXPO_EDIT_DROP:
		return 1;
	case EXPO_EDIT_SET:
		s->value = value;
		s->valuelen = len;
		break;
	case EXPO_EDIT_KEEP:
		break;
	}
	return 0;
}

/* Files one parsed sample under its family: 0, or -1 when malformed. */
static int
expo_sample_add(struct expo_merge *m, struct expo_sample *s)
{
	struct expo_local *x, *l = NULL;
	struct expo_family *fam;
	enum expo_type type;

	/* Samples of one metric come in runs: skip the lookup. */
	x = m->last;
	if (x == NULL || x->k.len != s->namelen ||
	    memcmp(x->k.name, s->name, x->k.len) != 0)
		x = m->last = expo_local_get(m, s->name, s->namelen, 1);
	if (x->flags & EXPO_LOCAL_DONE) {
		if (x->fam == NULL) {
			m->st->dropped++;
			return 0;
		}
		type = x->fam->type;
	} else {
		l = expo_local_family(m, x);
		type = expo_local_type(l);
	}
	/* Checked before resolving, so a bad line creates no family. */
	if (expo_labels_check(s, type) != 0)
		return -1;
	fam = l != NULL ? expo_resolve(m, x, l) : x->fam;
	if (fam == NULL) {
		m->st->dropped++;
		return 0;
	}
	if (m->edit != NULL && expo_sample_edit(m, fam, s) != 0)
		return 0;
	expo_sample_render(m, fam, s);
	m->st->samples++;
	return 0;
}

/*
 * Whether no two labels of s share a name.  A few are compared in pairs;
 * more go through a small set under the merge's keyed hash, so that 64
 * labels cost 64 lookups, not 2 016 comparisons of names made alike.
 */
static int
expo_labels_unique(const struct table *keyed, const struct expo_sample *s)
{
	unsigned char set[EXPO_LABELS_MAX * 2]; /* label index + 1; 0: empty */
	uint64_t hash[EXPO_LABELS_MAX];
	const struct expo_label *a, *b;
	size_t i, j, mask = sizeof set - 1;

	if (s->nlabels <= 8) {
		for (i = 1; i < s->nlabels; i++) {
			a = &s->labels[i];
			for (j = 0; j < i; j++) {
				b = &s->labels[j];
				if (a->namelen == b->namelen &&
				    memcmp(a->name, b->name, a->namelen) == 0)
					return 0;
			}
		}
		return 1;
	}
	memset(set, 0, sizeof set);
	for (i = 0; i < s->nlabels; i++) {
		a = &s->labels[i];
		hash[i] = table_hash(keyed, a->name, a->namelen);
		for (j = hash[i] & mask; set[j] != 0; j = (j + 1) & mask) {
			b = &s->labels[set[j] - 1];
			if (hash[set[j] - 1] == hash[i] &&
			    a->namelen == b->namelen &&
			    memcmp(a->name, b->name, a->namelen) == 0)
				return 0;
		}
		set[j] = (unsigned char)(i + 1);
	}
	return 1;
}

/* The {...} of a sample, p just past the brace: the end, or NULL. */
static const char *
expo_labels_parse(const struct table *keyed, struct expo_sample *s,
    const char *p, const char *end)
{
	struct expo_label *l;
	size_t n;
	int high;

	for (;;) {
		p = expo_skip_blanks(p, end);
		if (p < end && *p == '}')
			return expo_labels_unique(keyed, s) ? p + 1 : NULL;
		if (s->nlabels == EXPO_LABELS_MAX)
			return NULL;
		l = &s->labels[s->nlabels];
		if ((n = expo_name_len(p, end, 0)) == 0)
			return NULL;
		l->name = p;
		l->namelen = n;
		p = expo_skip_blanks(p + n, end);
		if (p == end || *p != '=')
			return NULL;
		p = expo_skip_blanks(p + 1, end);
		if (p == end || *p != '"')
			return NULL;
		l->value = ++p;
		high = 0;
		for (;;) {
			while (p < end &&
			    !(expo_ctype[(unsigned char)*p] & EXPO_C_QUOTED))
				p++;
			if (p == end)
				return NULL;
			if (*p == '"')
				break;
			if (*p == '\\') {
				if (++p == end ||
				    (*p != '\\' && *p != '"' && *p != 'n'))
					return NULL;
			} else if ((unsigned char)*p >= 0x80)
				high = 1;
			p++;
		}
		l->valuelen = (size_t)(p - l->value);
		p++;
		if (high &&
		    !expo_utf8_valid((const unsigned char *)l->value,
			l->valuelen))
			return NULL;
		if (n == 8 && memcmp(l->name, "__name__", 8) == 0)
			return NULL;
		s->nlabels++;

		p = expo_skip_blanks(p, end);
		if (p < end && *p == ',')
			p++;
		else if (p < end && *p == '}')
			return expo_labels_unique(keyed, s) ? p + 1 : NULL;
		else
			return NULL;
	}
}

/* name{labels} value [timestamp] into s: 0, or -1 when malformed. */
static int
expo_sample_parse(const struct table *keyed, struct expo_sample *s,
    const char *p, const char *end)
{
	const char *tok;
	long long ts;
	size_t n;

	if ((n = expo_name_len(p, end, 1)) == 0)
		return -1;
	s->name = p;
	s->namelen = n;
	s->nlabels = 0;
	s->ts = NULL;
	p += n;
	tok = expo_skip_blanks(p, end);
	if (tok < end && *tok == '{') {
		if ((p = expo_labels_parse(keyed, s, tok + 1, end)) == NULL)
			return -1;
	} else if (tok == p)
		return -1;
	p = expo_skip_blanks(p, end);

	for (tok = p; p < end && !expo_is_blank(*p); p++)
		;
	if (p == tok || value_parse(tok, (size_t)(p - tok)) != 0)
		return -1;
	s->value = tok;
	s->valuelen = (size_t)(p - tok);
	p = expo_skip_blanks(p, end);
	if (p < end) {
		for (tok = p; p < end && !expo_is_blank(*p); p++)
			;
		if (value_timestamp_parse(tok, (size_t)(p - tok), &ts) != 0)
			return -1;
		s->ts = tok;
		s->tslen = (size_t)(p - tok);
		if (expo_skip_blanks(p, end) != end)
			return -1;
	}
	return 0;
}

static int
expo_sample_line(struct expo_merge *m, const char *p, const char *end)
{
	m->line = p;
	if (expo_sample_parse(&m->locals, &m->sample, p, end) != 0)
		return -1;
	return expo_sample_add(m, &m->sample);
}

/* HELP text may escape only backslash and newline. */
static int
expo_help_check(const char *p, size_t len)
{
	size_t i;
	int high = 0;

	for (i = 0; i < len; i++) {
		if (p[i] == '\\') {
			if (++i == len || (p[i] != '\\' && p[i] != 'n'))
				return -1;
		} else if ((unsigned char)p[i] >= 0x80)
			high = 1;
	}
	if (high && !expo_utf8_valid((const unsigned char *)p, len))
		return -1;
	return 0;
}

static int
expo_type_parse(const char *p, size_t len, enum expo_type *type)
{
	size_t i;

	for (i = 0; i < EXPO_TYPE_COUNT; i++) {
		if (strlen(expo_type_names[i]) == len &&
		    memcmp(expo_type_names[i], p, len) == 0) {
			*type = (enum expo_type)i;
			return 0;
		}
	}
	return -1;
}

/*
 * The head of a line starting with '#', p just past it: 1 for a HELP or
 * TYPE line (*help says which) naming *name (*n long) with text from *text,
 * 0 for a comment, -1 when malformed.  Anything but a HELP or TYPE line is
 * a comment, and so (as the reference parser has it) is a HELP or TYPE
 * line that ends before its text.
 */
static int
expo_comment_head(const char *p, const char *end, int *help, const char **name,
    size_t *n, const char **text)
{
	const char *kw;

	p = expo_skip_blanks(p, end);
	for (kw = p; p < end && !expo_is_blank(*p); p++)
		;
	if (p == end)
		return 0;
	if (p - kw == 4 && memcmp(kw, "HELP", 4) == 0)
		*help = 1;
	else if (p - kw == 4 && memcmp(kw, "TYPE", 4) == 0)
		*help = 0;
	else
		return 0;
	p = expo_skip_blanks(p, end);
	*name = p;
	*n = expo_name_len(p, end, 1);
	p += *n;
	if (p == end)
		return 0;
	if (*n == 0 || !expo_is_blank(*p))
		return -1;
	p = expo_skip_blanks(p, end);
	if (p == end)
		return 0;
	*text = p;
	return 1;
}

/* A line starting with '#', p just past it. */
static int
expo_comment_line(struct expo_merge *m, const char *p, const char *end)
{
	struct expo_local *l;
	enum expo_type type;
	const char *name, *last;
	size_t n;
	int help, rc;

	if ((rc = expo_comment_head(p, end, &help, &name, &n, &p)) != 1)
		return rc;

	if (help) {
		if (expo_help_check(p, (size_t)(end - p)) != 0)
			return -1;
		l = expo_local_get(m, name, n, 1);
		if (l->flags & EXPO_LOCAL_HELP)
			return -1;
		l->flags |= EXPO_LOCAL_HELP;
		l->help = p;
		l->helplen = (size_t)(end - p);
		/* A HELP after the samples still counts; it renders first. */
		expo_local_help(m, l);
		return 0;
	}

	for (last = end; last > p && expo_is_blank(last[-1]); last--)
		;
	if (expo_type_parse(p, (size_t)(last - p), &type) != 0)
		return -1;
	l = expo_local_get(m, name, n, 1);
	/* A second TYPE, or one after the name's samples, is an error. */
	if (l->flags & (EXPO_LOCAL_TYPE | EXPO_LOCAL_DONE))
		return -1;
	l->flags |= EXPO_LOCAL_TYPE;
	l->type = type;
	return 0;
}

/* One line without its newline: 1 when blank, 0 when good, -1 when not. */
static int
expo_line(struct expo_merge *m, const char *p, size_t len)
{
	const char *end;

	if (len > EXPO_LINE_MAX || memchr(p, '\0', len) != NULL)
		return -1;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	end = p + len;
	p = expo_skip_blanks(p, end);
	if (p == end)
		return 1;
	if (*p == '#')
		return expo_comment_line(m, p + 1, end);
	return expo_sample_line(m, p, end);
}

/* The lines from p on, counted (a tight loop), not read. */
static size_t
expo_lines_left(const char *p, const char *end)
{
	size_t n = end > p && end[-1] != '\n';

	for (; p < end; p++)
		n += *p == '\n';
	return n;
}

static void
expo_worker_set(struct expo_merge *m, const char *worker)
{
	const char *s;

	m->worker.len = 0;
	for (s = worker; *s != '\0'; s++) {
		if (*s == '\\')
			buf_add(&m->worker, "\\\\", 2);
		else if (*s == '"')
			buf_add(&m->worker, "\\\"", 2);
		else if (*s == '\n')
			buf_add(&m->worker, "\\n", 2);
		else
			buf_add(&m->worker, s, 1);
	}
}

struct expo_merge *
expo_merge_create(void)
{
	struct expo_merge *m = xcalloc(1, sizeof *m);

	table_init(&m->claims, sizeof(struct expo_claim));
	table_init(&m->locals, sizeof(struct expo_local));
	return m;
}

/*
 * Adds one worker's scrape.  Returns 0, or -1 when the text held malformed
 * lines and nothing else (not an exposition at all: an error page, say);
 * st, when not NULL, gets this scrape's counts either way.
 */
int
expo_merge_add(struct expo_merge *m, const char *worker, const char *text,
    size_t len, struct expo_stats *st)
{
	return expo_merge_add_edited(m, worker, text, len, NULL, NULL, st);
}

/*
 * expo_merge_add, with edit asked about every sample the merge keeps: it
 * may leave the sample out or give it another value (the carried totals).
 */
int
expo_merge_add_edited(struct expo_merge *m, const char *worker,
    const char *text, size_t len, expo_edit_fn edit, void *edit_arg,
    struct expo_stats *st)
{
	struct expo_stats scratch;
	const char *p = text, *end = text + len, *nl, *eol;
	size_t good = 0;
	int rc;

	if (st == NULL)
		st = &scratch;
	memset(st, 0, sizeof *st);
	m->st = st;
	table_clear(&m->locals);
	m->last = NULL;
	m->edit = edit;
	m->edit_arg = edit_arg;
	expo_worker_set(m, worker);

	while (p < end) {
		/*
		 * Past either cap the rest is counted as dropped, not read:
		 * every sample line counts towards the series, taken or not,
		 * as it was work, and a new name costs more than a sample.
		 */
		if (st->samples + st->dropped >= EXPO_SERIES_MAX ||
		    m->locals.n >= EXPO_NAMES_MAX) {
			st->capped = expo_lines_left(p, end);
			st->lines += st->capped;
			good += st->capped;
			break;
		}
		nl = memchr(p, '\n', (size_t)(end - p));
		eol = nl != NULL ? nl : end;
		st->lines++;
		rc = expo_line(m, p, (size_t)(eol - p));
		if (rc == -1) {
			if (st->malformed++ == 0)
				st->malformed_line = st->lines;
		} else if (rc == 0)
			good++;
		p = nl != NULL ? nl + 1 : end;
	}
	m->st = NULL;
	m->edit = NULL;
	return good == 0 && st->malformed != 0 ? -1 : 0;
}

/* Appends the merged exposition; families without samples are left out. */
void
expo_merge_render(struct expo_merge *m, struct buf *out)
{
	struct expo_family *fam;
	const char *type;
	size_t i, total = 0;

	for (i = 0; i < m->nfamilies; i++) {
		fam = m->families[i];
		if (fam->samples.len != 0)
			total += fam->samples.len + 2 * fam->namelen +
			    fam->helplen + 40;
	}
	buf_reserve(out, total);

	for (i = 0; i < m->nfamilies; i++) {
		fam = m->families[i];
		if (fam->samples.len == 0)
			continue;
		if (fam->help != NULL) {
			buf_add(out, "# HELP ", 7);
			buf_add(out, fam->name, fam->namelen);
			buf_add(out, " ", 1);
			buf_add(out, fam->help, fam->helplen);
			buf_add(out, "\n", 1);
		}
		type = expo_type_names[fam->type];
		buf_add(out, "# TYPE ", 7);
		buf_add(out, fam->name, fam->namelen);
		buf_add(out, " ", 1);
		buf_add(out, type, strlen(type));
		buf_add(out, "\n", 1);
		buf_add(out, fam->samples.data, fam->samples.len);
	}
}

/*
 * Forgets every family, for the next scrape, but keeps the sample buffers
 * and tables at their size: a fan-out scrape then neither grows buffers
 * nor faults in fresh pages, which cost more than the merge itself.
 */
void
expo_merge_reset(struct expo_merge *m)
{
	size_t i;

	for (i = 0; i < m->nfamilies; i++)
		m->families[i]->samples.len = 0;
	m->nfamilies = 0;
	for (i = 0; i < m->nnames; i++)
		m->names[i].len = 0;
	m->name = 0;
	table_clear(&m->claims);
	table_clear(&m->locals);
	m->last = NULL;
}

void
expo_merge_free(struct expo_merge *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nalloc; i++) {
		buf_finish(&m->families[i]->samples);
		free(m->families[i]);
	}
	free(m->families);
	for (i = 0; i < m->nnames; i++)
		buf_finish(&m->names[i]);
	free(m->names);
	table_finish(&m->claims);
	table_finish(&m->locals);
	buf_finish(&m->worker);
	free(m);
}

/*
 * The reader: one line at a time, with its family resolved, for code that
 * looks at samples one by one (the carried totals) rather than merging
 * whole scrapes.  A sample's family is the one a TYPE line of this text
 * names for it, or for its base name when that is a histogram or summary
 * (or a counter, for _total), else an untyped family of its own name.
 */
/* What the text said about one name; the merge refuses the same things. */
#define EXPO_READER_TYPED 0x1 /* a TYPE line named it */
#define EXPO_READER_HELPED 0x2 /* a HELP line named it */
#define EXPO_READER_SAMPLED 0x4 /* a sample or its family had it */
struct expo_reader_name {
	struct table_key k; /* into the text */
	int flags;
	enum expo_type type;
};

struct expo_reader {
	const char *p;
	const char *end;
	size_t lineno;
	struct table names; /* of struct expo_reader_name */
	const char *sampled; /* the last sample's name, marked already */
	size_t sampledlen;
	struct expo_sample sample;
};

/* Sets flag on name: 0, or -1 when it was set, or refuses to be now. */
static int
expo_reader_mark(struct expo_reader *r, const char *name, size_t len, int flag,
    enum expo_type type)
{
	struct expo_reader_name *t;
	int added;

	t = table_add(&r->names, name, len, &added);
	/* A second TYPE or HELP, or a TYPE after the name's samples. */
	if ((t->flags & flag & ~EXPO_READER_SAMPLED) ||
	    (flag == EXPO_READER_TYPED && (t->flags & EXPO_READER_SAMPLED)))
		return -1;
	t->flags |= flag;
	if (flag == EXPO_READER_TYPED)
		t->type = type;
	return 0;
}

static const struct expo_reader_name *
expo_reader_type_get(struct expo_reader *r, const char *name, size_t len)
{
	const struct expo_reader_name *t = table_find(&r->names, name, len);

	return t != NULL && (t->flags & EXPO_READER_TYPED) ? t : NULL;
}

/* The family of sample name s, as the comment above says. */
static void
expo_reader_family(struct expo_reader *r, struct expo_line *line)
{
	static const struct {
		const char *suffix;
		size_t len;
		enum expo_type type;
	} owned[] = {
		{ "_bucket", 7, EXPO_HISTOGRAM },
		{ "_sum", 4, EXPO_HISTOGRAM },
		{ "_count", 6, EXPO_HISTOGRAM },
		{ "_created", 8, EXPO_HISTOGRAM },
		{ "_sum", 4, EXPO_SUMMARY },
		{ "_count", 6, EXPO_SUMMARY },
		{ "_created", 8, EXPO_SUMMARY },
		{ "_total", 6, EXPO_COUNTER },
		{ "_created", 8, EXPO_COUNTER },
	};
	const struct expo_reader_name *t;
	size_t i, len;

	line->family = line->name;
	line->familylen = line->namelen;
	line->type = EXPO_UNTYPED;
	if ((t = expo_reader_type_get(r, line->name, line->namelen)) != NULL) {
		line->type = t->type;
		return;
	}
	for (i = 0; i < sizeof owned / sizeof owned[0]; i++) {
		len = owned[i].len;
		if (line->namelen <= len ||
		    memcmp(line->name + line->namelen - len, owned[i].suffix,
			len) != 0)
			continue;
		t = expo_reader_type_get(r, line->name, line->namelen - len);
		if (t != NULL && t->type == owned[i].type) {
			line->familylen = t->k.len;
			line->type = t->type;
			return;
		}
	}
}

/* A line starting with '#', p just past it. */
static int
expo_reader_comment(struct expo_reader *r, struct expo_line *line,
    const char *p, const char *end)
{
	const char *name, *last;
	size_t n;
	int help, rc;

	if ((rc = expo_comment_head(p, end, &help, &name, &n, &p)) != 1)
		return rc;
	line->family = name;
	line->familylen = n;
	if (help) {
		if (expo_help_check(p, (size_t)(end - p)) != 0 ||
		    expo_reader_mark(r, name, n, EXPO_READER_HELPED, 0) != 0)
			return -1;
		line->kind = EXPO_LINE_HELP;
		line->help = p;
		line->helplen = (size_t)(end - p);
		return 0;
	}
	for (last = end; last > p && expo_is_blank(last[-1]); last--)
		;
	if (expo_type_parse(p, (size_t)(last - p), &line->type) != 0 ||
	    expo_reader_mark(r, name, n, EXPO_READER_TYPED, line->type) != 0)
		return -1;
	line->kind = EXPO_LINE_TYPE;
	return 0;
}

/* name{labels} value [timestamp] */
static int
expo_reader_sample(struct expo_reader *r, struct expo_line *line, const char *p,
    const char *end)
{
	struct expo_sample *s = &r->sample;

	if (expo_sample_parse(&r->names, s, p, end) != 0)
		return -1;
	line->name = s->name;
	line->namelen = s->namelen;
	line->valuetext = s->value;
	line->valuelen = s->valuelen;
	expo_reader_family(r, line);
	if (expo_labels_check(s, line->type) != 0)
		return -1;
	/* Samples come in runs of one name: mark it once per run. */
	if (r->sampled == NULL || r->sampledlen != line->namelen ||
	    memcmp(r->sampled, line->name, line->namelen) != 0) {
		expo_reader_mark(r, line->name, line->namelen,
		    EXPO_READER_SAMPLED, 0);
		expo_reader_mark(r, line->family, line->familylen,
		    EXPO_READER_SAMPLED, 0);
		r->sampled = line->name;
		r->sampledlen = line->namelen;
	}
	line->labels = s->labels;
	line->nlabels = s->nlabels;
	line->kind = EXPO_LINE_SAMPLE;
	return 0;
}

struct expo_reader *
expo_reader_create(const char *text, size_t len)
{
	struct expo_reader *r = xcalloc(1, sizeof *r);

	r->p = text;
	r->end = text + len;
	table_init(&r->names, sizeof(struct expo_reader_name));
	return r;
}

/*
 * The next line: 1 when there is one, 0 at the end, -1 when the line is
 * malformed (then only its text, len and lineno are set; the next call
 * goes on after it).
 */
int
expo_reader_next(struct expo_reader *r, struct expo_line *line)
{
	const char *p = r->p, *nl, *end;
	size_t len;
	int rc;

	if (p >= r->end)
		return 0;
	memset(line, 0, sizeof *line);
	nl = memchr(p, '\n', (size_t)(r->end - p));
	end = nl != NULL ? nl : r->end;
	r->p = nl != NULL ? nl + 1 : r->end;
	line->text = p;
	line->len = len = (size_t)(end - p);
	line->lineno = ++r->lineno;
	if (len > EXPO_LINE_MAX || memchr(p, '\0', len) != NULL)
		return -1;
	if (len > 0 && p[len - 1] == '\r')
		end--;
	p = expo_skip_blanks(p, end);
	if (p == end) {
		line->kind = EXPO_LINE_BLANK;
		return 1;
	}
	line->kind = EXPO_LINE_COMMENT;
	if (*p == '#')
		rc = expo_reader_comment(r, line, p + 1, end);
	else
		rc = expo_reader_sample(r, line, p, end);
	if (rc != 0) {
		line->kind = EXPO_LINE_COMMENT;
		return -1;
	}
	return 1;
}

void
expo_reader_free(struct expo_reader *r)
{
	if (r == NULL)
		return;
	table_finish(&r->names);
	free(r);
}

const char *
expo_type_name(enum expo_type type)
{
	return expo_type_names[type];
}

/*
 * Carried totals: a slot outlives its processes.  For every counter series
 * of a slot (counters, histogram _bucket, _count and _sum, summary _count
 * and _sum) the carry keeps the sum of the slot's finished lifetimes' final
 * values, and what promfork serves for the slot is that sum plus the live
 * worker's value, so a slot's counters never go down across recycles.
 * Gauges, untyped series and summary quantiles are the live worker's only.
 *
 * - A lifetime's final values are the answer to its retire scrape, else the
 *   last answer promfork had from it (carry_add_lifetime).
 * - A counter that goes down within one lifetime had a reset of its own:
 *   its last value is folded into the carry, so the served value does not
 *   go down either.  Only an answer that started after the newest one
 *   applied may say so (carry_begin's stamp): two scrapes in flight at once
 *   may finish in either order.
 * - A carried series the live worker does not produce (yet) is still
 *   served, with its carried value.
 * - A family whose type changed between lifetimes is dropped, and counted.
 * - _created samples of carried families are dropped: a creation time that
 *   jumps at every recycle tells readers that the series was reset, which
 *   is exactly what the carry hides, and no one creation time is true of a
 *   series made of several lifetimes.
 * - All slots share one cap on carried series (carry_limits); what does
 *   not fit is served raw and counted.
 *
 * Pure logic, no I/O: tests and the fuzzer call it directly.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

struct carry_family {
	char *name;
	size_t len;
	enum expo_type type;
	char *help; /* escaped as on the wire; NULL when none was seen */
	size_t helplen;
	uint32_t *series; /* indices into carry->series, first-seen order */
	size_t nseries;
	size_t seriescap;
	uint64_t seen; /* generation of the last live answer that had it */
};

#define CARRY_TEXT_MAX 24

struct carry_series {
	/* First what a scrape that changed nothing reads: one cache line. */
	uint32_t family;
	/*
	 * The value last applied as the worker wrote it, and the text it was
	 * served as: most series do not change between two scrapes, and
	 * then neither parsing nor formatting is needed.  0: none.
	 */
	uint8_t textlen;
	uint8_t servedlen;
	uint64_t seen; /* generation of the last live answer that had it */
	char text[CARRY_TEXT_MAX];
	char served[CARRY_TEXT_MAX];
	char *key; /* name{labels sorted by name}: the series as rendered */
	size_t keylen;
	double carried; /* finished lifetimes, and resets folded in */
	double last; /* the current lifetime's newest value */
	int has_last;
};

/* The n-th counter line of the last answer: its series, and the line up to
 * the value as the worker wrote it, in carry->raw. */
struct carry_pos {
	uint32_t series;
	uint32_t rawlen;
	size_t rawoff;
};

struct carry {
	struct carry_limits *limits;
	struct carry_family *families;
	size_t nfamilies;
	size_t familiescap;
	struct carry_series *series;
	size_t nseries;
	size_t seriescap;
	struct table sindex; /* of struct carry_entry: key -> series */
	struct table findex; /* of struct carry_entry: name -> family */
	/*
	 * The carried series in the order the last answer gave them: a worker
	 * writes the same lines in the same order every time, so the next
	 * answer's n-th counter line is checked against order[n] with one
	 * memcmp, not looked up.  The lines are kept one after the other in
	 * raw, which only grows where an answer differed from the last.
	 */
	struct carry_pos *order;
	struct buf raw;
	size_t norder;
	size_t ordercap;
	size_t pos; /* counter lines of this answer so far */
	size_t nseen; /* series seen in this answer */
	uint64_t generation; /* one per carry_begin */
	uint64_t stamp; /* of the newest answer applied */
	int stale; /* the answer being applied started before that one */
	struct buf key; /* scratch */
	char formatted[32]; /* carry_edit's value, when not cached */
	struct buf last; /* the family last checked, in this answer */
	const char *lastptr; /* where it was */
	struct buf lastname; /* the sample name last checked */
	enum expo_type lasttype;
	size_t lastfam; /* its index; SIZE_MAX when not carried */
};

/* An entry of the indices: the name of a series or family, and where it
 * is in its array. */
struct carry_entry {
	struct table_key k; /* into the series' key or the family's name */
	uint32_t index;
};

struct carry *
carry_create(struct carry_limits *limits)
{
	struct carry *c = xcalloc(1, sizeof *c);

	c->limits = limits;
	table_init(&c->sindex, sizeof(struct carry_entry));
	table_init(&c->findex, sizeof(struct carry_entry));
	return c;
}

/* Forgets everything carried. */
void
carry_clear(struct carry *c)
{
	size_t i;

	for (i = 0; i < c->nseries; i++)
		free(c->series[i].key);
	c->norder = 0;
	c->raw.len = 0;
	for (i = 0; i < c->nfamilies; i++) {
		free(c->families[i].name);
		free(c->families[i].help);
		free(c->families[i].series);
	}
	c->limits->series -= c->nseries;
	c->nseries = c->nfamilies = 0;
	c->last.len = 0;
	c->lastname.len = 0;
	table_clear(&c->sindex);
	table_clear(&c->findex);
}

void
carry_free(struct carry *c)
{
	if (c == NULL)
		return;
	carry_clear(c);
	free(c->series);
	free(c->families);
	table_finish(&c->sindex);
	table_finish(&c->findex);
	free(c->order);
	buf_finish(&c->raw);
	buf_finish(&c->key);
	buf_finish(&c->last);
	buf_finish(&c->lastname);
	free(c);
}

int
carry_empty(const struct carry *c)
{
	return c->nseries == 0;
}

size_t
carry_series(const struct carry *c)
{
	return c->nseries;
}

/* Indexes series or family i under name, which it owns. */
static void
carry_index(struct table *t, const char *name, size_t len, size_t i)
{
	struct carry_entry *e;
	int added;

	e = table_add(t, name, len, &added);
	e->index = (uint32_t)i;
}

static struct carry_family *
carry_family_get(const struct carry *c, const char *name, size_t len)
{
	const struct carry_entry *e = table_find(&c->findex, name, len);

	return e != NULL ? &c->families[e->index] : NULL;
}

/* Drops family fam and its series; the others move, so do the indices. */
static void
carry_family_drop(struct carry *c, struct carry_family *fam)
{
	size_t f = (size_t)(fam - c->families), i, n = 0, nf = 0;
	uint32_t *map = xcalloc(c->nseries + 1, sizeof *map);
	struct carry_family *g;

	c->limits->type_changes++;
	c->last.len = 0;
	c->lastname.len = 0;
	c->norder = 0; /* indices move */
	c->raw.len = 0;
	c->nseen = 0;
	for (i = 0; i < c->nseries; i++) {
		if (c->series[i].family == f) {
			free(c->series[i].key);
			continue;
		}
		map[i] = (uint32_t)n;
		c->series[n] = c->series[i];
		if (c->series[n].family > f)
			c->series[n].family--;
		n++;
	}
	c->limits->series -= c->nseries - n;
	c->nseries = n;
	for (i = 0; i < n; i++)
		c->nseen += c->series[i].seen == c->generation;
	free(fam->name);
	free(fam->help);
	free(fam->series);
	for (i = 0; i < c->nfamilies; i++) {
		if (i == f)
			continue;
		g = &c->families[nf++];
		*g = c->families[i];
		for (n = 0; n < g->nseries; n++)
			g->series[n] = map[g->series[n]];
	}
	c->nfamilies = nf;
	free(map);
	table_clear(&c->sindex);
	table_clear(&c->findex);
	for (i = 0; i < c->nseries; i++)
		carry_index(&c->sindex, c->series[i].key, c->series[i].keylen,
		    i);
	for (i = 0; i < c->nfamilies; i++)
		carry_index(&c->findex, c->families[i].name, c->families[i].len,
		    i);
}

/*
 * The carried family called name, checked against the type the worker
 * gives it now: a family whose type changed is dropped (NULL).
 */
static struct carry_family *
carry_family_check(struct carry *c, const char *name, size_t len,
    enum expo_type type)
{
	struct carry_family *fam = carry_family_get(c, name, len);

	if (fam != NULL && fam->type != type) {
		carry_family_drop(c, fam);
		return NULL;
	}
	return fam;
}

/*
 * Drops the carried families that the live answer's family fam (of type)
 * or sample name (NULL for a TYPE line) contradicts: one of that name but
 * another type, one named like a sample of another family, and a histogram
 * or summary whose _sum, _count, _bucket or _created names fam now takes.
 * Their series, rendered beside the live ones, would make an exposition
 * whose families clash.  Returns fam's carried family, if it stays.
 */
static struct carry_family *
carry_names_check(struct carry *c, const char *fam, size_t famlen,
    enum expo_type type, const char *name, size_t namelen)
{
	static const char *const suffixes[] = { "_bucket", "_sum", "_count",
		"_created" };
	struct carry_family *cf, *f;
	size_t i, n;

	if (c->nfamilies == 0)
		return NULL;
	/* Samples come in runs of one name and family: check once a run. */
	if (name != NULL && namelen != famlen &&
	    (c->lastname.len != namelen ||
		memcmp(c->lastname.data, name, namelen) != 0)) {
		c->lastname.len = 0;
		buf_add(&c->lastname, name, namelen);
		if ((f = carry_family_get(c, name, namelen)) != NULL)
			carry_family_drop(c, f);
	}
	if (c->last.len == famlen && c->lasttype == type &&
	    (fam == c->lastptr ||
		(c->last.data != NULL &&
		    memcmp(c->last.data, fam, famlen) == 0))) {
		c->lastptr = fam; /* the merge's family names stay put */
		return c->lastfam < c->nfamilies ? &c->families[c->lastfam]
						 : NULL;
	}
	c->last.len = 0;
	c->lastptr = fam;
	buf_add(&c->last, fam, famlen);
	c->lasttype = type;
	cf = carry_family_check(c, fam, famlen, type);
	for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		n = strlen(suffixes[i]);
		if (famlen <= n ||
		    memcmp(fam + famlen - n, suffixes[i], n) != 0)
			continue;
		f = carry_family_get(c, fam, famlen - n);
		if (f != NULL &&
		    (f->type == EXPO_HISTOGRAM || f->type == EXPO_SUMMARY))
			carry_family_drop(c, f);
	}
	/* The converse: the names a live histogram or summary takes. */
	if (type == EXPO_HISTOGRAM || type == EXPO_SUMMARY) {
		buf_reserve(&c->key, famlen + 16);
		memcpy(c->key.data, fam, famlen);
		for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
			n = strlen(suffixes[i]);
			memcpy(c->key.data + famlen, suffixes[i], n);
			if ((f = carry_family_get(c, c->key.data,
				 famlen + n)) != NULL)
				carry_family_drop(c, f);
		}
	}
	cf = cf != NULL ? carry_family_get(c, fam, famlen) : NULL;
	c->lastfam = cf != NULL ? (size_t)(cf - c->families) : SIZE_MAX;
	return cf;
}

static struct carry_family *
carry_family_add(struct carry *c, const char *name, size_t len,
    enum expo_type type)
{
	struct carry_family *fam;

	if (c->nfamilies == c->familiescap) {
		c->familiescap = c->familiescap != 0 ? c->familiescap * 2 : 16;
		c->families = xreallocarray(c->families, c->familiescap,
		    sizeof *c->families);
	}
	fam = &c->families[c->nfamilies++];
	memset(fam, 0, sizeof *fam);
	c->last.len = 0;
	c->lastname.len = 0;
	fam->name = xstrndup(name, len);
	fam->len = len;
	fam->type = type;
	carry_index(&c->findex, fam->name, len, c->nfamilies - 1);
	return fam;
}

static int
carry_ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len > n && memcmp(s + len - n, suffix, n) == 0;
}

/* Is sample name (of a family of type) one whose values add up? */
static int
carry_kind(const struct expo_line *s)
{
	const char *suffix;
	size_t n = s->namelen - s->familylen;

	switch (s->type) {
	case EXPO_COUNTER:
		return !carry_ends_with(s->name, s->namelen, "_created");
	case EXPO_HISTOGRAM:
	case EXPO_SUMMARY:
		if (n == 0)
			return 0; /* quantiles */
		suffix = s->name + s->familylen;
		return (n == 4 && memcmp(suffix, "_sum", 4) == 0) ||
		    (n == 6 && memcmp(suffix, "_count", 6) == 0) ||
		    (s->type == EXPO_HISTOGRAM && n == 7 &&
			memcmp(suffix, "_bucket", 7) == 0);
	default:
		return 0;
	}
}

/* A _created sample of a family whose totals are carried? */
static int
carry_created(const struct carry *c, const struct expo_line *s)
{
	const struct carry_family *fam;
	char *total;
	size_t len;

	if (!carry_ends_with(s->name, s->namelen, "_created"))
		return 0;
	if (s->type == EXPO_COUNTER || s->type == EXPO_HISTOGRAM ||
	    s->type == EXPO_SUMMARY)
		return s->familylen != s->namelen;
	/* client_python's text format: a gauge family of its own. */
	len = s->namelen - 8;
	if (carry_family_get(c, s->name, len) != NULL)
		return 1;
	total = xmalloc(len + 6);
	memcpy(total, s->name, len);
	memcpy(total + len, "_total", 6);
	fam = carry_family_get(c, total, len + 6);
	free(total);
	return fam != NULL;
}

/* The series' key in c->key: its name and labels sorted by name. */
static void
carry_key(struct carry *c, const struct expo_line *s)
{
	const struct expo_label *order[EXPO_LABELS_MAX], *l;
	struct buf *b = &c->key;
	size_t i, j,
	    n = s->nlabels < EXPO_LABELS_MAX ? s->nlabels : EXPO_LABELS_MAX;

	for (i = 0; i < n; i++) {
		l = &s->labels[i];
		for (j = i; j > 0; j--) {
			size_t a = order[j - 1]->namelen,
			       m = a < l->namelen ? a : l->namelen;
			int cmp = memcmp(order[j - 1]->name, l->name, m);
			if (cmp < 0 || (cmp == 0 && a <= l->namelen))
				break;
			order[j] = order[j - 1];
		}
		order[j] = l;
	}
	b->len = 0;
	buf_add(b, s->name, s->namelen);
	if (n == 0)
		return;
	buf_add(b, "{", 1);
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_add(b, ",", 1);
		buf_add(b, order[i]->name, order[i]->namelen);
		buf_add(b, "=\"", 2);
		buf_add(b, order[i]->value, order[i]->valuelen);
		buf_add(b, "\"", 1);
	}
	buf_add(b, "}", 1);
}

/* The carried series s, made if there is room under the cap. */
static struct carry_series *
carry_series_find(struct carry *c, const struct expo_line *s)
{
	const struct carry_entry *e;
	struct carry_family *fam;
	struct carry_series *cs;

	carry_key(c, s);
	if ((e = table_find(&c->sindex, c->key.data, c->key.len)) != NULL)
		return &c->series[e->index];
	if (c->limits->series >= c->limits->max_series ||
	    c->nseries >= UINT32_MAX - 1) {
		c->limits->dropped++;
		return NULL;
	}
	fam = carry_family_get(c, s->family, s->familylen);
	if (fam == NULL)
		fam = carry_family_add(c, s->family, s->familylen, s->type);
	if (c->nseries == c->seriescap) {
		c->seriescap = c->seriescap != 0 ? c->seriescap * 2 : 64;
		c->series =
		    xreallocarray(c->series, c->seriescap, sizeof *c->series);
	}
	cs = &c->series[c->nseries++];
	memset(cs, 0, sizeof *cs);
	cs->key = xstrndup(c->key.data, c->key.len);
	cs->keylen = c->key.len;
	cs->family = (uint32_t)(fam - c->families);
	carry_index(&c->sindex, cs->key, cs->keylen, c->nseries - 1);
	if (fam->nseries == fam->seriescap) {
		fam->seriescap = fam->seriescap != 0 ? fam->seriescap * 2 : 8;
		fam->series = xreallocarray(fam->series, fam->seriescap,
		    sizeof *fam->series);
	}
	fam->series[fam->nseries++] = (uint32_t)(c->nseries - 1);
	c->limits->series++;
	return cs;
}

/*
 * A live answer starts.  stamp orders answers by when their scrape
 * started (any clock that does not go back): an answer older than one
 * already applied may not take a counter's drop for a reset.
 */
void
carry_begin(struct carry *c, uint64_t stamp)
{
	c->generation++;
	c->last.len = 0;
	c->lastname.len = 0;
	c->pos = 0;
	c->nseen = 0;
	c->stale = stamp < c->stamp;
	if (!c->stale)
		c->stamp = stamp;
}

static const double carry_pow10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
	1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
	1e20, 1e21, 1e22 };

/*
 * The number a sample value the parser accepted stands for.  Counts are
 * mostly plain decimals of few digits ("123.0"): those are one exact
 * division (both operands are exact doubles, so it rounds correctly);
 * the rest go to strtod.
 */
static double
carry_number(const char *s, size_t len)
{
	char tmp[64], *copy = tmp;
	uint64_t m = 0;
	size_t i;
	int nd = 0, frac = 0, point = 0;
	double v;

	for (i = 0; i < len; i++) {
		if (s[i] >= '0' && s[i] <= '9') {
			if (m != 0 || s[i] != '0')
				nd++;
			m = m * 10 + (uint64_t)(s[i] - '0');
			frac += point;
			if (nd > 15 || frac > 22)
				break;
		} else if (s[i] == '.' && !point)
			point = 1;
		else
			break;
	}
	if (i == len && len > (size_t)point)
		return frac != 0 ? (double)m / carry_pow10[frac] : (double)m;
	if (len >= sizeof tmp)
		copy = xmalloc(len + 1);
	memcpy(copy, s, len);
	copy[len] = '\0';
	v = strtod(copy, NULL);
	if (copy != tmp)
		free(copy);
	return v;
}

/* Remembers that the answer's next counter line was series cs. */
static void
carry_order(struct carry *c, struct carry_series *cs, const char *raw,
    size_t rawlen)
{
	struct carry_pos *o;
	size_t i, used = 0;

	if (c->pos >= c->ordercap) {
		c->ordercap = c->ordercap != 0 ? c->ordercap * 2 : 64;
		c->order =
		    xreallocarray(c->order, c->ordercap, sizeof *c->order);
	}
	/* Answers that keep differing would grow raw without end. */
	if (c->raw.len > 65536 && c->raw.len / 4 > c->norder * 16) {
		for (i = 0; i < c->pos; i++)
			used += c->order[i].rawlen;
		if (c->raw.len > 4 * used) {
			c->norder = c->pos;
			c->raw.len = 0;
			for (i = 0; i < c->norder; i++) {
				o = &c->order[i];
				/* Copies forward: never past its source. */
				memmove(c->raw.data + c->raw.len,
				    c->raw.data + o->rawoff, o->rawlen);
				o->rawoff = c->raw.len;
				c->raw.len += o->rawlen;
			}
		}
	}
	o = &c->order[c->pos];
	o->series = (uint32_t)(cs - c->series);
	o->rawoff = c->raw.len;
	o->rawlen = (uint32_t)rawlen;
	buf_add(&c->raw, raw, rawlen);
	if (c->pos >= c->norder)
		c->norder = c->pos + 1;
}

/*
 * One sample of the live answer: EXPO_EDIT_KEEP to serve it as it is,
 * EXPO_EDIT_SET to serve *served instead, EXPO_EDIT_DROP to leave it out.
 */
/*
 * The carried series of sample s, the answer's next counter line: *csp set
 * and EXPO_EDIT_SET, or EXPO_EDIT_KEEP (not carried), EXPO_EDIT_DROP.
 */
static enum expo_edit
carry_lookup(struct carry *c, const struct expo_line *s,
    struct carry_series **csp)
{
	struct carry_series *cs = NULL;
	const char *raw = s->text;
	size_t rawlen = (size_t)(s->valuetext - s->text);

	if (s->kind != EXPO_LINE_SAMPLE)
		return EXPO_EDIT_KEEP;
	carry_names_check(c, s->family, s->familylen, s->type, s->name,
	    s->namelen);
	if (c->pos < c->norder) {
		const struct carry_pos *o = &c->order[c->pos];

		cs = &c->series[o->series];
		if (o->rawlen != rawlen ||
		    memcmp(c->raw.data + o->rawoff, raw, rawlen) != 0 ||
		    c->families[cs->family].len != s->familylen)
			cs = NULL;
	}
	if (cs == NULL) {
		if (carry_created(c, s))
			return EXPO_EDIT_DROP;
		if (!carry_kind(s))
			return EXPO_EDIT_KEEP;
		if ((cs = carry_series_find(c, s)) == NULL)
			return EXPO_EDIT_KEEP;
		carry_order(c, cs, raw, rawlen);
	}
	c->pos++;
	*csp = cs;
	return EXPO_EDIT_SET;
}

static void
carry_seen(struct carry *c, struct carry_series *cs)
{
	c->families[cs->family].seen = c->generation;
	if (cs->seen != c->generation) {
		cs->seen = c->generation;
		c->nseen++;
	}
}

/* Series cs has value v in the live answer: what to serve. */
static double
carry_observe(struct carry *c, struct carry_series *cs, double v)
{
	carry_seen(c, cs);
	if (!c->stale) {
		if (cs->has_last && v < cs->last) {
			cs->carried += cs->last; /* a reset of its own */
			cs->servedlen = 0;
		}
		cs->last = v;
		cs->has_last = 1;
	}
	return cs->carried + v;
}

/*
 * One sample of the live answer: EXPO_EDIT_KEEP to serve it as it is,
 * EXPO_EDIT_SET to serve *served instead, EXPO_EDIT_DROP to leave it out.
 */
enum expo_edit
carry_apply(struct carry *c, const struct expo_line *s, double *served)
{
	struct carry_series *cs;
	enum expo_edit e;
	double v;

	if ((e = carry_lookup(c, s, &cs)) != EXPO_EDIT_SET)
		return e;
	if (isnan(v = carry_number(s->valuetext, s->valuelen)))
		return EXPO_EDIT_KEEP;
	*served = carry_observe(c, cs, v);
	return EXPO_EDIT_SET;
}

static const char carry_digits[200] =
    "000102030405060708091011121314151617181920212223242526272829"
    "303132333435363738394041424344454647484950515253545556575859"
    "606162636465666768697071727374757677787980818283848586878889"
    "90919293949596979899";

/* The shortest text that reads back as v, as Go's parser takes it. */
static size_t
carry_format_double(char *buf, double v)
{
	int prec, n = 0;

	if (isnan(v)) {
		memcpy(buf, "NaN", 3);
		return 3;
	}
	if (isinf(v)) {
		memcpy(buf, v > 0 ? "+Inf" : "-Inf", 4);
		return 4;
	}
	for (prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, 32, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return (size_t)n;
}

/* The text of a served value; buf holds 32. */
static size_t
carry_format(char *buf, double v)
{
	unsigned long long u;
	char tmp[24];
	size_t n = 0, len = 0;

	/* Counts are whole numbers: no need for the general formatter. */
	if (!(v >= 0 && v <= 9007199254740992.0) ||
	    v != (double)(u = (unsigned long long)v))
		return carry_format_double(buf, v);
	for (; u >= 100; u /= 100) {
		tmp[n++] = carry_digits[u % 100 * 2 + 1];
		tmp[n++] = carry_digits[u % 100 * 2];
	}
	tmp[n++] = (char)('0' + u % 10);
	if (u >= 10)
		tmp[n++] = (char)('0' + u / 10);
	while (n > 0)
		buf[len++] = tmp[--n];
	return len;
}

/* Has cs the value text of s as last time, and its carry unchanged since?
 * Then what was served then is served again. */
static inline int
carry_cached(const struct carry *c, const struct carry_series *cs,
    const struct expo_line *s)
{
	return !c->stale && cs->servedlen != 0 && cs->textlen == s->valuelen &&
	    memcmp(cs->text, s->valuetext, s->valuelen) == 0;
}

/*
 * Is sample s the answer's next counter line word for word as last time,
 * value included, of a family of the same type, with its carry unchanged
 * since?  Then it is served as then, with no lookup and no check of its
 * names: they were checked when the line was first seen, and the carried
 * families change since only through the live answers (whose new lines
 * are checked) or carry_add_lifetime (which forgets the order).
 */
static int
carry_same(const struct carry *c, const struct expo_line *s,
    struct carry_series **csp)
{
	const struct carry_pos *o;
	const struct carry_family *fam;
	struct carry_series *cs;
	size_t rawlen = (size_t)(s->valuetext - s->text);

	if (c->pos >= c->norder)
		return 0;
	o = &c->order[c->pos];
	/* The next line's series is far from this one's in memory. */
	if (c->pos + 1 < c->norder)
		__builtin_prefetch(&c->series[o[1].series]);
	cs = &c->series[o->series];
	fam = &c->families[cs->family];
	if (o->rawlen != rawlen || fam->type != s->type ||
	    fam->len != s->familylen || !carry_cached(c, cs, s) ||
	    memcmp(c->raw.data + o->rawoff, s->text, rawlen) != 0)
		return 0;
	*csp = cs;
	return 1;
}

/* A value not served before: observed, carried, formatted and cached. */
static enum expo_edit
carry_edit_new(struct carry *c, struct carry_series *cs,
    const struct expo_line *s, const char **value, size_t *len)
{
	double v;

	if (isnan(v = carry_number(s->valuetext, s->valuelen)))
		return EXPO_EDIT_KEEP;
	*len = carry_format(c->formatted, carry_observe(c, cs, v));
	*value = c->formatted;
	cs->servedlen = 0;
	if (!c->stale && s->valuelen <= CARRY_TEXT_MAX &&
	    *len <= CARRY_TEXT_MAX) {
		memcpy(cs->text, s->valuetext, s->valuelen);
		cs->textlen = (uint8_t)s->valuelen;
		memcpy(cs->served, c->formatted, *len);
		cs->servedlen = (uint8_t)*len;
	}
	return EXPO_EDIT_SET;
}

/* carry_apply as the merge's edit (expo_merge_add_edited). */
enum expo_edit
carry_edit(void *arg, const struct expo_line *s, const char **value,
    size_t *len)
{
	struct carry *c = arg;
	struct carry_series *cs;
	enum expo_edit e;

	if (carry_same(c, s, &cs))
		c->pos++;
	else if ((e = carry_lookup(c, s, &cs)) != EXPO_EDIT_SET)
		return e;
	else if (!carry_cached(c, cs, s))
		return carry_edit_new(c, cs, s, value, len);
	carry_seen(c, cs);
	*value = cs->served;
	*len = cs->servedlen;
	return EXPO_EDIT_SET;
}

/* Did the answer since carry_begin have every carried series? */
int
carry_complete(const struct carry *c)
{
	return c->nseen == c->nseries;
}

/* The current lifetime is over: its last values join the carried ones. */
void
carry_end_lifetime(struct carry *c)
{
	size_t i;

	for (i = 0; i < c->nseries; i++) {
		if (c->series[i].has_last)
			c->series[i].carried += c->series[i].last;
		c->series[i].servedlen = 0;
		c->series[i].last = 0;
		c->series[i].has_last = 0;
	}
}

static void
carry_help(struct carry *c, const struct expo_line *h)
{
	struct carry_family *fam;

	fam = carry_family_get(c, h->family, h->familylen);
	if (fam == NULL || fam->help != NULL)
		return;
	fam->help = xstrndup(h->help, h->helplen);
	fam->helplen = h->helplen;
}

/*
 * Ends the current lifetime with text, its final answer: every counter
 * series in it is carried at its value there.  Returns -1 when text held
 * malformed lines and nothing else, 0 otherwise (malformed lines are
 * skipped and counted in *malformed when not NULL).
 */
int
carry_add_lifetime(struct carry *c, const char *text, size_t len,
    size_t *malformed)
{
	struct expo_reader *r = expo_reader_create(text, len);
	struct expo_line line, help;
	size_t bad = 0, good = 0;
	double v;
	int rc;

	memset(&help, 0, sizeof help);
	carry_begin(c, c->stamp);
	while ((rc = expo_reader_next(r, &line)) != 0) {
		if (rc == -1) {
			bad++;
			continue;
		}
		good++;
		if (line.kind == EXPO_LINE_HELP) {
			help = line; /* the family may follow */
			carry_help(c, &line);
		} else if (line.kind == EXPO_LINE_TYPE)
			carry_names_check(c, line.family, line.familylen,
			    line.type, NULL, 0);
		else if (line.kind == EXPO_LINE_SAMPLE) {
			carry_apply(c, &line, &v);
			if (help.kind == EXPO_LINE_HELP &&
			    help.familylen == line.familylen &&
			    memcmp(help.family, line.family, line.familylen) ==
				0)
				carry_help(c, &help);
		}
	}
	expo_reader_free(r);
	carry_end_lifetime(c);
	/* Its families were checked against its own text, not the live one. */
	c->norder = 0;
	c->raw.len = 0;
	if (malformed != NULL)
		*malformed = bad;
	return good == 0 && bad != 0 ? -1 : 0;
}

static void
carry_value(struct buf *out, double v)
{
	char buf[32];

	buf_add(out, buf, carry_format(buf, v));
}

/* A carried family's HELP (when it had one) and TYPE lines. */
static void
carry_family_header(const struct carry_family *fam, struct buf *out)
{
	const char *type = expo_type_name(fam->type);

	if (fam->help != NULL) {
		buf_add(out, "# HELP ", 7);
		buf_add(out, fam->name, fam->len);
		buf_add(out, " ", 1);
		buf_add(out, fam->help, fam->helplen);
		buf_add(out, "\n", 1);
	}
	buf_add(out, "# TYPE ", 7);
	buf_add(out, fam->name, fam->len);
	buf_add(out, " ", 1);
	buf_add(out, type, strlen(type));
	buf_add(out, "\n", 1);
}

/* Series of fam not seen since carry_begin; they count as seen after. */
static size_t
carry_render_series(struct carry *c, struct carry_family *fam, struct buf *out,
    int header)
{
	struct carry_series *cs;
	size_t i, n = 0;

	for (i = 0; i < fam->nseries; i++) {
		cs = &c->series[fam->series[i]];
		if (cs->seen == c->generation)
			continue;
		cs->seen = c->generation;
		c->nseen++;
		if (n++ == 0 && header)
			carry_family_header(fam, out);
		buf_add(out, cs->key, cs->keylen);
		buf_add(out, " ", 1);
		carry_value(out, cs->carried + (cs->has_last ? cs->last : 0));
		buf_add(out, "\n", 1);
	}
	fam->seen = c->generation;
	return n;
}

/*
 * Appends, as an exposition, every carried series the live answer since
 * carry_begin did not have (after carry_begin alone: all of them), each
 * family with its HELP and TYPE.
 */
void
carry_render(struct carry *c, struct buf *out)
{
	size_t i;

	for (i = 0; i < c->nfamilies && !carry_complete(c); i++)
		carry_render_series(c, &c->families[i], out, 1);
}

/* Leaving the live family name: its carried series not seen go here. */
static void
carry_rewrite_leave(struct carry *c, const char *name, size_t len,
    struct buf *out)
{
	struct carry_family *fam;

	if (name == NULL || (fam = carry_family_get(c, name, len)) == NULL)
		return;
	carry_render_series(c, fam, out, 0);
}

/*
 * The live answer text of a slot with carried totals, as promfork serves
 * it: counter values plus their carry, _created of carried families left
 * out, and the carried series the answer lacks added to their families.
 * Other lines, malformed ones included, pass as they are.
 */
void
carry_rewrite(struct carry *c, uint64_t stamp, const char *text, size_t len,
    struct buf *out)
{
	struct expo_reader *r = expo_reader_create(text, len);
	struct expo_line line;
	const char *cur = NULL;
	size_t curlen = 0, off;
	double v;
	int rc;

	carry_begin(c, stamp);
	buf_reserve(out, len + len / 8);
	while ((rc = expo_reader_next(r, &line)) != 0) {
		if (rc == 1 && line.kind >= EXPO_LINE_HELP &&
		    (cur == NULL || curlen != line.familylen ||
			memcmp(cur, line.family, curlen) != 0)) {
			carry_rewrite_leave(c, cur, curlen, out);
			cur = line.family;
			curlen = line.familylen;
		}
		if (rc == 1 && line.kind == EXPO_LINE_TYPE)
			carry_names_check(c, line.family, line.familylen,
			    line.type, NULL, 0);
		if (rc == 1 && line.kind == EXPO_LINE_SAMPLE) {
			switch (carry_apply(c, &line, &v)) {
			case EXPO_EDIT_DROP:
				continue;
			case EXPO_EDIT_SET:
				off = (size_t)(line.valuetext - line.text);
				buf_add(out, line.text, off);
				carry_value(out, v);
				buf_add(out, line.valuetext + line.valuelen,
				    line.len - off - line.valuelen);
				buf_add(out, "\n", 1);
				continue;
			case EXPO_EDIT_KEEP:
				break;
			}
		}
		buf_add(out, line.text, line.len);
		buf_add(out, "\n", 1);
	}
	expo_reader_free(r);
	carry_rewrite_leave(c, cur, curlen, out);
	carry_render(c, out);
}

/*
 * Adds a slot's live answer to a fan-out merge with its carried totals:
 * the merge asks the carry about every sample as it parses it (one pass),
 * then the carried series the answer lacked follow as a second text of
 * the same worker.  scratch is a buffer for them, kept warm by the caller.
 * Returns what expo_merge_add returns for the answer.
 */
int
carry_merge_add(struct carry *c, uint64_t stamp, struct expo_merge *m,
    const char *worker, const char *text, size_t len, struct buf *scratch,
    struct expo_stats *st)
{
	int rc;

	carry_begin(c, stamp);
	rc = expo_merge_add_edited(m, worker, text, len, carry_edit, c, st);
	if (!carry_complete(c)) {
		scratch->len = 0;
		carry_render(c, scratch);
		expo_merge_add(m, worker, scratch->data, scratch->len, NULL);
	}
	return rc;
}

/*
 * Appends the finished lifetimes' totals alone, not the current one's: what
 * a promfork restart takes up again (carry_add_lifetime reads it back) while
 * the live workers go on and are scraped afresh.  Zero totals are left out.
 */
void
carry_render_finished(const struct carry *c, struct buf *out)
{
	const struct carry_family *fam;
	const struct carry_series *cs;
	size_t f, i, n;

	for (f = 0; f < c->nfamilies; f++) {
		fam = &c->families[f];
		for (i = 0, n = 0; i < fam->nseries; i++) {
			cs = &c->series[fam->series[i]];
			if (cs->carried == 0)
				continue;
			if (n++ == 0)
				carry_family_header(fam, out);
			buf_add(out, cs->key, cs->keylen);
			buf_add(out, " ", 1);
			carry_value(out, cs->carried);
			buf_add(out, "\n", 1);
		}
	}
}

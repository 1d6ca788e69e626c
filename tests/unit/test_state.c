#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

/* Nothing binds these ports: the pool has no probe. */
#define LOW 42000
#define HIGH 42007

static char dir[] = "/tmp/promfork-test-state.XXXXXX";
static char path[128];
static struct event_base *base;
static struct registry reg;
static pid_t kids[4];

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/state.json", dir);
	base = event_base_new();
	registry_init(&reg, base, LOW, HIGH, NULL, NULL);
}

static void
teardown(void)
{
	char cmd[128];
	size_t i;

	registry_finish(&reg);
	event_base_free(base);
	for (i = 0; i < sizeof kids / sizeof kids[0]; i++) {
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	system(cmd);
}

static struct api_config acfg; /* standalone, no one but root allowed */

TestSuite(state, .init = setup, .fini = teardown, .timeout = 20);

static pid_t
kid(int i)
{
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	kids[i] = pid;
	return pid;
}

static unsigned long long
starttime(pid_t pid)
{
	struct proc_stat st;
	char *cause = NULL;

	cr_assert_eq(proc_stat_read(pid, &st, &cause), 0, "%s", cause);
	return st.starttime;
}

static void
write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static char *
read_file(const char *p)
{
	char *buf = xcalloc(1, 65536);
	FILE *f = fopen(p, "r");

	cr_assert_not_null(f, "no %s", p);
	fread(buf, 1, 65535, f);
	fclose(f);
	return buf;
}

static void
loop_ms(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
refused(const char *text, const char *needle)
{
	struct state_entry *e = (void *)1;
	char *cause = NULL;
	size_t n = 99;

	cr_assert_eq(state_parse(text, strlen(text), &e, &n, NULL, &cause), -1,
	    "accepted %s", text);
	cr_assert_null(e);
	cr_assert_eq(n, 0);
	cr_assert(strstr(cause, needle) != NULL, "\"%s\" not in \"%s\" for %s",
	    needle, cause, text);
	free(cause);
}

#define LEASE(w, port, pid, more) \
	"{\"worker\": " #w ", \"port\": " #port ", \"pid\": " #pid \
	", \"starttime\": 7, \"source\": \"api\", \"created\": 5" more "}"
#define BOOT "\"boot_id\": \"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\", "
#define FILE1(leases) "{\"version\": 1, " BOOT "\"leases\": [" leases "]}"

Test(state, parse_good)
{
	const char *text = FILE1(LEASE(1, 42001, 100,
	    ", \"labels\": {\"role\": \"web\", \"app\": \"x\"}") "," LEASE(5,
	    42005, 200, ", \"future\": true"));
	struct state_entry *e;
	char *cause = NULL;
	size_t n;

	cr_assert_eq(state_parse(text, strlen(text), &e, &n, NULL, &cause), 0,
	    "%s", cause);
	cr_assert_eq(n, 2);
	cr_assert_eq(e[0].worker, 1);
	cr_assert_eq(e[0].port, 42001);
	cr_assert_eq(e[0].pid, 100);
	cr_assert_eq(e[0].starttime, 7);
	cr_assert_eq(e[0].created, 5);
	cr_assert_eq(e[0].source, LEASE_API);
	cr_assert_eq(e[0].labels.n, 2);
	cr_assert_str_eq(e[0].labels.v[0].name, "role", "order is kept");
	cr_assert_str_eq(labels_get(&e[0].labels, "app"), "x");
	cr_assert_eq(e[1].worker, 5);
	cr_assert_eq(e[1].labels.n, 0);
	state_entries_free(e, n);

	text = FILE1("");
	cr_assert_eq(state_parse(text, strlen(text), &e, &n, NULL, &cause), 0);
	cr_assert_eq(n, 0);
	state_entries_free(e, n);
	state_entries_free(NULL, 0);
}

Test(state, parse_bad)
{
	refused("", "not valid JSON");
	refused("{\"version\": 1, \"leases\": [", "not valid JSON");
	refused("[]", "not a JSON object");
	refused("{\"leases\": []}", "\"version\"");
	refused("{\"version\": 2, \"leases\": []}", "\"version\"");
	refused("{\"version\": \"1\", \"leases\": []}", "\"version\"");
	refused("{\"version\": 1, " BOOT "\"x\": 1}", "\"leases\"");
	refused("{\"version\": 1, " BOOT "\"leases\": {}}", "\"leases\"");
	refused("{\"version\": 1, \"leases\": []}", "\"boot_id\"");
	refused("{\"version\": 1, \"boot_id\": 7, \"leases\": []}",
	    "\"boot_id\"");
	refused("{\"version\": 1, \"boot_id\": \"0f6e\", \"leases\": []}",
	    "\"boot_id\"");
	refused("{\"version\": 1, \"boot_id\": "
		"\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5bX\", \"leases\": []}",
	    "\"boot_id\"");
	refused("{\"version\": 1, \"boot_id\": "
		"\"0f6e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5G\", \"leases\": []}",
	    "\"boot_id\"");
	refused("{\"version\": 1, \"version\": 1, \"leases\": []}",
	    "not valid JSON");
	refused(FILE1("3"), "lease 0 is not an object");
	refused(FILE1(LEASE(-1, 42000, 100, "")), "\"worker\"");
	refused(FILE1(LEASE(65535, 42000, 100, "")), "\"worker\"");
	refused(FILE1(LEASE(1.5, 42000, 100, "")), "\"worker\"");
	refused(FILE1(LEASE(0, 0, 100, "")), "\"port\"");
	refused(FILE1(LEASE(0, 65536, 100, "")), "\"port\"");
	refused(FILE1(LEASE(0, 42000, 1, "")), "\"pid\"");
	refused(FILE1(LEASE(0, 42000, 2147483648, "")), "\"pid\"");
	refused(FILE1(LEASE(0, 42000, "100", "")), "\"pid\"");
	refused(FILE1(
		    "{\"worker\": 0, \"port\": 42000, \"pid\": 100, "
		    "\"starttime\": -1, \"source\": \"api\", \"created\": 5}"),
	    "\"starttime\"");
	refused(FILE1("{\"worker\": 0, \"port\": 42000, \"pid\": 100, "
		      "\"starttime\": 1, \"source\": \"api\"}"),
	    "\"created\"");
	refused(FILE1("{\"worker\": 0, \"port\": 42000, \"pid\": 100, "
		      "\"starttime\": 1, \"source\": \"x\", \"created\": 5}"),
	    "\"source\"");
	refused(FILE1("{\"worker\": 0, \"port\": 42000, \"pid\": 100, "
		      "\"starttime\": 1, \"created\": 5}"),
	    "\"source\"");
	refused(FILE1(LEASE(0, 42000, 100, ", \"labels\": []")), "lease 0: ");
	refused(FILE1(LEASE(0, 42000, 100, ", \"labels\": {\"a\": 1}")),
	    "must be a string");
	refused(FILE1(LEASE(0, 42000, 100, ", \"labels\": {\"__a\": \"1\"}")),
	    "reserved");
	refused(FILE1(
		    LEASE(0, 42000, 100, ", \"labels\": {\"worker\": \"1\"}")),
	    "reserved");
	refused(FILE1(LEASE(2, 42002, 100, "") "," LEASE(1, 42001, 200, "")),
	    "sorted by worker");
	refused(FILE1(LEASE(1, 42001, 100, "") "," LEASE(1, 42001, 200, "")),
	    "sorted by worker");
	refused(FILE1(LEASE(1, 42001, 100, "") "," LEASE(2, 42002, 300,
		    "") "," LEASE(3, 42003, 100, "")),
	    "pid 100 has more than one lease");
}

Test(state, parse_bounds)
{
	struct state_entry *e = NULL;
	char *cause = NULL, *big;
	size_t n, len = STATE_FILE_MAX + 1, off, i;

	big = xmalloc(len);
	memset(big, ' ', len);
	cr_assert_eq(state_parse(big, len, &e, &n, NULL, &cause), -1);
	cr_assert(strstr(cause, "larger than") != NULL, "%s", cause);
	free(cause);

	/* 65537 leases fit in the size cap but not in any port range. */
	off = (size_t)sprintf(big, "{\"version\": 1, " BOOT "\"leases\": [");
	for (i = 0; i <= 65536; i++)
		off += (size_t)sprintf(big + off, "%s0", i ? "," : "");
	off += (size_t)sprintf(big + off, "]}");
	cr_assert_lt(off, len);
	cr_assert_eq(state_parse(big, off, &e, &n, NULL, &cause), -1);
	cr_assert(strstr(cause, "more than 65536 leases") != NULL, "%s", cause);
	free(cause);
	free(big);
}

static struct lease *
lease(pid_t pid, int slot, const char *role)
{
	struct labels ls = { NULL, 0 };
	struct lease *l;
	char *cause = NULL;
	enum registry_error error;
	int created;

	if (role != NULL) {
		labels_set(&ls, "role", role, &cause);
		labels_set(&ls, "app", "a", &cause);
	}
	l = registry_lease_pid(&reg, pid, &ls, LEASE_API, slot, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	labels_finish(&ls);
	return l;
}

Test(state, render_parses_back)
{
	struct state_entry *e;
	char *text, *cause = NULL;
	size_t len, n;

	lease(kid(0), 3, "web");
	lease(kid(1), 1, NULL);
	text = state_render(&reg, &len);
	cr_assert_eq(state_parse(text, len, &e, &n, NULL, &cause), 0, "%s: %s",
	    cause, text);
	cr_assert_eq(n, 2);
	cr_assert_eq(e[0].worker, 1);
	cr_assert_eq(e[0].pid, kids[1]);
	cr_assert_eq(e[1].worker, 3);
	cr_assert_eq(e[1].port, LOW + 3);
	cr_assert_eq(e[1].pid, kids[0]);
	cr_assert_eq(e[1].starttime, starttime(kids[0]));
	cr_assert_eq(e[1].labels.n, 2);
	cr_assert_str_eq(e[1].labels.v[0].name, "role");
	cr_assert_str_eq(e[1].labels.v[1].name, "app");
	state_entries_free(e, n);
	free(text);
}

Test(state, adopt_takes_up_live_workers_only)
{
	struct mirror st;
	struct lease *l;
	char *text, buf[2048];
	pid_t live = kid(0), reused = kid(1), other = kid(2), far = kid(3);
	unsigned long long t = starttime(live);
	pid_t dead;

	dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	snprintf(buf, sizeof buf,
	    "{\"version\": 1, \"boot_id\": \"%s\", \"leases\": ["
	    "{\"worker\": 2, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1234, \"labels\": "
	    "{\"role\": \"web\"}},"
	    "{\"worker\": 3, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1234},"
	    "{\"worker\": 4, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1234},"
	    "{\"worker\": 5, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1234},"
	    "{\"worker\": 40, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1234}]}",
	    proc_boot_id(), LOW + 2, (int)live, t, LOW + 3, (int)reused,
	    starttime(reused) + 1, LOW + 4, (int)dead, t, LOW + 9, (int)other,
	    starttime(other), LOW + 40, (int)far, starttime(far));
	write_file(path, buf);

	cr_assert_eq(state_init(&st, path, &reg, &acfg), 0, "written back");
	cr_assert_eq(reg.count, 1);
	l = registry_find_worker(&reg, 2);
	cr_assert_not_null(l, "same slot");
	cr_assert_eq(l->pid, live);
	cr_assert_eq(l->port, LOW + 2);
	cr_assert_eq(l->created, 1234);
	cr_assert_str_eq(labels_get(&l->labels, "role"), "web");
	text = read_file(path);
	cr_assert(strstr(text, "\"worker\": 2") != NULL, "%s", text);
	cr_assert(strstr(text, "\"worker\": 3") == NULL, "%s", text);
	free(text);
	state_finish(&st);
}

/* A kid that runs as uid, for adoption checks (needs root). */
static pid_t
kid_as(int i, uid_t uid)
{
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		if (setresgid(uid, uid, uid) != 0 ||
		    setresuid(uid, uid, uid) != 0)
			_exit(1);
		pause();
		_exit(0);
	}
	kids[i] = pid;
	/* until it has changed users */
	for (int tries = 0; tries < 1000; tries++) {
		struct proc_creds pc;
		char *cause = NULL;
		if (proc_creds_read(pid, &pc, &cause) == 0 && pc.uid == uid)
			break;
		free(cause);
		usleep(1000);
	}
	return pid;
}

static void
write_leases(const char *boot, pid_t a, pid_t b)
{
	char buf[1024];

	snprintf(buf, sizeof buf,
	    "{\"version\": 1, \"boot_id\": \"%s\", \"leases\": ["
	    "{\"worker\": 1, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1},"
	    "{\"worker\": 2, \"port\": %d, \"pid\": %d, \"starttime\": %llu, "
	    "\"source\": \"api\", \"created\": 1}]}",
	    boot, LOW + 1, (int)a, starttime(a), LOW + 2, (int)b, starttime(b));
	write_file(path, buf);
}

/* Pids and start times of another boot say nothing of this one's. */
Test(state, adopt_refuses_a_file_of_another_boot)
{
	char *cause = NULL, other[PROC_BOOT_ID_LEN + 1];

	cr_assert_eq(strlen(proc_boot_id()), PROC_BOOT_ID_LEN);
	memcpy(other, proc_boot_id(), sizeof other);
	other[0] = other[0] == '0' ? '1' : '0';
	write_leases(other, kid(0), kid(1));
	cr_assert_eq(state_adopt(path, &reg, &acfg, &cause), -1);
	cr_assert(strstr(cause, "before the last reboot") != NULL, "%s", cause);
	cr_assert_eq(reg.count, 0);
	free(cause);
}

/*
 * A saved lease is taken up only as a registration would be allowed now:
 * a user no longer allowed is dropped, and the per-user cap holds.
 */
Test(state, adopt_rechecks_the_owner_and_the_cap)
{
	static const uid_t nobody[] = { 65534 };
	struct mirror st;
	char *cause = NULL, *text;
	pid_t a, b;
	struct stat sb;

	if (geteuid() != 0)
		cr_skip_test("needs root to run processes as another user");
	a = kid_as(0, 65534);
	b = kid_as(1, 65534);
	write_leases(proc_boot_id(), a, b);
	cr_assert_eq(state_adopt(path, &reg, &acfg, &cause), 0,
	    "not allowed: %s", cause);
	cr_assert_eq(reg.count, 0);

	write_leases(proc_boot_id(), a, b);
	acfg.allow_uids = nobody;
	acfg.nallow_uids = 1;
	acfg.max_leases_per_uid = 1;
	cr_assert_eq(state_init(&st, path, &reg, &acfg), 0, "%s", cause);
	cr_assert_eq(reg.count, 1);
	cr_assert_eq(registry_find_worker(&reg, 1)->uid, 65534);
	cr_assert_eq(registry_count_uid(&reg, 65534), 1);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600, "the state file is private");
	text = read_file(path);
	cr_assert(strstr(text, proc_boot_id()) != NULL, "%s", text);
	free(text);
	state_finish(&st);
}

Test(state, adopt_without_a_file_or_with_a_bad_one)
{
	char *cause = NULL;

	cr_assert_eq(state_adopt(path, &reg, &acfg, &cause), 0,
	    "no file: nothing");
	write_file(path, "{\"version\": 1, \"leases\": [}");
	cr_assert_eq(state_adopt(path, &reg, &acfg, &cause), -1);
	cr_assert(strstr(cause, path) != NULL, "%s", cause);
	cr_assert(strstr(cause, "not valid JSON") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	unlink(path);
	mkdir(path, 0755);
	cr_assert_eq(state_adopt(path, &reg, &acfg, &cause), -1);
	cr_assert(strstr(cause, "regular file") != NULL, "%s", cause);
	free(cause);
	cr_assert_eq(reg.count, 0);
	rmdir(path);
}

Test(state, every_change_is_written_and_finish_keeps_the_leases)
{
	struct mirror st;
	struct lease *l;
	char *text;

	cr_assert_eq(state_init(&st, path, &reg, &acfg), 0);
	l = lease(kid(0), -1, "web");
	loop_ms(50);
	text = read_file(path);
	cr_assert(strstr(text, "\"role\": \"web\"") != NULL, "%s", text);
	free(text);
	lease_close(l, LEASE_END_RELEASE);
	loop_ms(50);
	text = read_file(path);
	cr_assert(strstr(text, "\"leases\": []") != NULL, "%s", text);
	free(text);
	cr_assert_geq(st.writes, 3, "at start, and twice since");

	lease(kids[0], -1, NULL);
	state_finish(&st);
	text = read_file(path);
	cr_assert(strstr(text, "\"worker\": 0") != NULL, "%s", text);
	free(text);
}

Test(state, unwritable_directory_is_an_error)
{
	struct mirror st;
	char *p;

	xasprintf(&p, "%s/no/such/dir/state.json", dir);
	cr_assert_eq(state_init(&st, p, &reg, &acfg), -1);
	cr_assert_eq(st.errors, 1);
	state_finish(&st);
	free(p);
}

/* Standalone, the slots' carried totals survive a promfork restart. */
Test(state, carried_totals_are_written_and_taken_up)
{
	const char final[] = "# HELP req_total Requests.\n"
			     "# TYPE req_total counter\n"
			     "req_total{code=\"200\"} 41\n";
	struct registry reg2;
	struct mirror st;
	struct buf out = { NULL, 0, 0 };
	char *text;
	size_t len;

	continuity_end(reg.cont, 3, final, strlen(final), 0);
	text = state_render(&reg, &len);
	cr_assert(strstr(text, "\"carried\"") != NULL, "%s", text);
	write_file(path, text);
	free(text);

	registry_init(&reg2, base, LOW, HIGH, NULL, NULL);
	cr_assert_eq(state_init(&st, path, &reg2, &acfg), 0);
	cr_assert_eq(continuity_render_slot(reg2.cont, 3, &out), strlen(final));
	cr_assert_eq(memcmp(out.data, final, out.len), 0);
	cr_assert_not_null(registry_carry(&reg2, 3, 0), "held, no worker yet");
	state_finish(&st);
	registry_finish(&reg2);
	buf_finish(&out);
}

Test(state, carried_totals_bad)
{
	static const char *const bad[] = {
		"{\"version\": 1, \"leases\": [], \"carried\": 3}",
		"{\"version\": 1, \"leases\": [], \"carried\": [{\"worker\": "
		"-1, \"totals\": \"\"}]}",
		"{\"version\": 1, \"leases\": [], \"carried\": [{\"worker\": "
		"1}]}",
		"{\"version\": 1, \"leases\": [], \"carried\": [7]}",
		"not json",
	};
	struct state_carried *c;
	char *cause;
	size_t i, n;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		cr_assert_eq(state_parse_carried(bad[i], strlen(bad[i]), &c, &n,
				 &cause),
		    -1, "%s", bad[i]);
		cr_assert_not_null(cause);
		cr_assert_null(c);
		cr_assert_eq(n, 0);
		free(cause);
	}
	cr_assert_eq(state_parse_carried("{\"version\": 1}", 14, &c, &n,
			 &cause),
	    0);
	cr_assert_eq(n, 0);
}

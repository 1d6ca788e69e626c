#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "promfork.h"

static char dir[] = "/tmp/promfork-test-check.XXXXXX";

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	system(cmd);
}

TestSuite(check, .init = setup, .fini = teardown);

static int
parse(const char *line, struct check_sock *sk)
{
	return check_tcp_parse(line, strlen(line), sk);
}

Test(check, tcp_ipv4_listen_line)
{
	struct check_sock sk;

	cr_assert_eq(
	    parse("   3: 0100007F:24C3 00000000:0000 0A 00000000:00000000 "
		  "00:00000000 00000000  1000        0 123456 1 "
		  "0000000000000000 100 "
		  "0 0 10 0\n",
		&sk),
	    0);
	cr_assert_eq(sk.port, 9411);
	cr_assert_eq(sk.state, 0x0a);
	cr_assert_eq(sk.uid, 1000);
	cr_assert_eq(sk.inode, 123456);
}

Test(check, tcp_ipv6_established_line)
{
	struct check_sock sk;

	cr_assert_eq(
	    parse("  12: 00000000000000000000000001000000:24C4 "
		  "00000000000000000000000001000000:D3A2 01 00000000:00000000 "
		  "00:00000000 00000000     0        0 98765432101 1 "
		  "0000000000000000 20 4 30 10 -1",
		&sk),
	    0);
	cr_assert_eq(sk.port, 9412);
	cr_assert_eq(sk.state, 0x01);
	cr_assert_eq(sk.uid, 0);
	cr_assert_eq(sk.inode, 98765432101ULL);
}

Test(check, tcp_bad_lines)
{
	static const char *bad[] = {
		"",
		"\n",
		"  sl  local_address rem_address   st tx_queue rx_queue tr "
		"tm->when retrnsmt   uid  timeout inode\n",
		/* truncated before the inode */
		"   3: 0100007F:24C3 00000000:0000 0A 00000000:00000000 "
		"00:00000000 00000000  1000        0",
		/* address of the wrong length */
		"   3: 100007F:24C3 00000000:0000 0A 0:0 00:0 0 1000 0 1 1",
		/* not hex */
		"   3: 0100007G:24C3 00000000:0000 0A 0:0 00:0 0 1000 0 1 1",
		"   3: 0100007F:24CZ 00000000:0000 0A 0:0 00:0 0 1000 0 1 1",
		/* colon in the wrong place */
		"   3: 0100007F2:4C3 00000000:0000 0A 0:0 00:0 0 1000 0 1 1",
		/* state of three digits */
		"   3: 0100007F:24C3 00000000:0000 0AA 0:0 00:0 0 1000 0 1 1",
		/* uid beyond 32 bits, inode beyond 64 bits */
		"   3: 0100007F:24C3 00000000:0000 0A 0:0 00:0 0 4294967296 0 1",
		"   3: 0100007F:24C3 00000000:0000 0A 0:0 00:0 0 1 0 "
		"99999999999999999999",
		"   3: 0100007F:24C3 00000000:0000 0A 0:0 00:0 0 -1 0 1",
		/* no slot colon */
		"   3 0100007F:24C3 00000000:0000 0A 0:0 00:0 0 1000 0 1 1",
		/* two lines in one */
		"   3: 0100007F:24C3 00000000:0000 0A 0:0 00:0 0 1000 0 1 1\n4:",
	};
	struct check_sock sk;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(parse(bad[i], &sk), -1, "accepted: %s", bad[i]);
}

Test(check, tcp_nul_and_length_bounds)
{
	static const char line[] = "   3: 0100007F:24C3 00000000:0000 0A "
				   "0:0 00:0 0 1000 0 1 1";
	struct check_sock sk;
	char big[1024];

	cr_assert_eq(check_tcp_parse(line, sizeof line - 1, &sk), 0);
	/* the NUL terminator included in the length */
	cr_assert_eq(check_tcp_parse(line, sizeof line, &sk), -1);
	/* a length that stops inside the line */
	cr_assert_eq(check_tcp_parse(line, 30, &sk), -1);
	memset(big, ' ', sizeof big);
	memcpy(big, line, sizeof line - 1);
	cr_assert_eq(check_tcp_parse(big, sizeof big, &sk), -1);
}

Test(check, socket_paths)
{
	char *cause = NULL, *path, longpath[200];

	xasprintf(&path, "%s/ok.sock", dir);
	cr_assert_eq(check_socket(path, &cause), 0);
	free(path);

	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	cr_assert_eq(check_socket(longpath, &cause), -1);
	cr_assert_not_null(strstr(cause, "longer than"));
	free(cause);

	cr_assert_eq(check_socket("/nonexistent-promfork/s.sock", &cause), -1);
	cr_assert_not_null(strstr(cause, "does not exist"), "%s", cause);
	free(cause);

	xasprintf(&path, "%s/file", dir);
	fclose(fopen(path, "w"));
	cr_assert_eq(check_socket(path, &cause), -1);
	cr_assert_not_null(strstr(cause, "not a socket"), "%s", cause);
	free(cause);
	free(path);
}

static int
unix_listener(const char *path, int do_listen)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	if (do_listen)
		cr_assert_eq(listen(fd, 1), 0);
	return fd;
}

Test(check, socket_live_and_stale)
{
	char *cause = NULL, *path;
	int fd;

	xasprintf(&path, "%s/live.sock", dir);
	fd = unix_listener(path, 1);
	cr_assert_eq(check_socket(path, &cause), -1);
	cr_assert_not_null(strstr(cause, "in use"), "%s", cause);
	free(cause);
	close(fd);
	/* left behind by a dead promfork: a start would replace it */
	cr_assert_eq(check_socket(path, &cause), 0);
	free(path);
}

/* A TCP listener on an ephemeral port of every IPv4 address. */
static int
tcp_listener(uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static char *
read_all(FILE *f)
{
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);

	buf[n] = '\0';
	return buf;
}

/* No suite fixtures here: stdout is redirected, the test makes its dir. */
TestSuite(check_run);

Test(check_run, reports_holder_and_fails_when_no_port_is_free,
    .init = cr_redirect_stdout)
{
	struct options o;
	char want[64], *out;
	uint16_t port;
	int fd, rc;

	setup();
	fd = tcp_listener(&port);
	memset(&o, 0, sizeof o);
	o.port_low = o.port_high = port;
	xasprintf(&o.sd_file, "%s/app.json", dir);
	rc = check_run(&o);
	fflush(stdout);
	out = read_all(cr_get_redirected_stdout());
	snprintf(want, sizeof want, "held by pid %d", (int)getpid());
	cr_assert_not_null(strstr(out, want), "%s", out);
	cr_assert_not_null(strstr(out, "none of the 1 ports"), "%s", out);
	cr_assert_eq(rc, 2);
	close(fd);
	free(o.sd_file);
	teardown();
}

Test(check_run, usable_then_not, .init = cr_redirect_stdout)
{
	struct options o;
	uint16_t port;
	char *out;
	int fd, rc;

	setup();
	fd = tcp_listener(&port);
	close(fd); /* now very likely free */
	memset(&o, 0, sizeof o);
	o.port_low = port;
	o.port_high = port;
	xasprintf(&o.sd_file, "%s/app.json", dir);
	rc = check_run(&o);
	fflush(stdout);
	out = read_all(cr_get_redirected_stdout());
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_not_null(strstr(out, "usable"), "%s", out);
	free(o.sd_file);

	o.sd_file = xstrdup("/nonexistent-promfork/app.json");
	rc = check_run(&o);
	cr_assert_eq(rc, 2);
	free(o.sd_file);
	teardown();
}

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

Test(activation, ours_when_listen_pid_is_ours)
{
	char *cause = NULL;
	int n = -1;

	cr_assert_eq(activation_parse("4242", "2", 4242, 16, &n, &cause), 0);
	cr_assert_eq(n, 2);
	cr_assert_null(cause);
}

Test(activation, unset_or_another_process_is_none)
{
	char *cause = NULL;
	int n = -1;

	cr_assert_eq(activation_parse(NULL, "2", 4242, 16, &n, &cause), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(activation_parse("4242", NULL, 4242, 16, &n, &cause), 0);
	cr_assert_eq(n, 0);
	/* a parent's sockets, inherited by mistake: not ours */
	cr_assert_eq(activation_parse("4243", "2", 4242, 16, &n, &cause), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(cause);
}

Test(activation, bad_values_are_refused)
{
	static const char *const pids[] = { "", "0", "-1", "12x", " 1",
		"99999999999999999999" };
	static const char *const fds[] = { "", "-1", "17", "1 ", "0x2",
		"99999999999999999999" };
	char *cause;
	size_t i;
	int n;

	for (i = 0; i < sizeof pids / sizeof pids[0]; i++) {
		cause = NULL;
		cr_assert_eq(activation_parse(pids[i], "1", 1, 16, &n, &cause),
		    -1, "LISTEN_PID \"%s\"", pids[i]);
		cr_assert(strstr(cause, "LISTEN_PID") != NULL, "%s", cause);
		free(cause);
	}
	for (i = 0; i < sizeof fds / sizeof fds[0]; i++) {
		cause = NULL;
		cr_assert_eq(activation_parse("1", fds[i], 1, 16, &n, &cause),
		    -1, "LISTEN_FDS \"%s\"", fds[i]);
		cr_assert(strstr(cause, "from 0 to 16") != NULL, "%s", cause);
		free(cause);
	}
}

Test(activation, no_sockets_is_a_clear_error)
{
	char *cause = NULL;
	int fds[16];

	unsetenv("LISTEN_PID");
	setenv("LISTEN_FDS", "1", 1);
	cr_assert_eq(activation_fds(fds, 16, &cause), -1);
	cr_assert(strstr(cause, ".socket unit") != NULL, "%s", cause);
	cr_assert_null(getenv("LISTEN_FDS"), "the variables are removed");
	free(cause);
}

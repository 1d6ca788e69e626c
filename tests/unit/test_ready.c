#include <criterion/criterion.h>
#include <string.h>

#include "promfork.h"

static struct ready_input
wrapped(size_t leases, unsigned long long granted, long long since_ms)
{
	struct ready_input in;

	memset(&in, 0, sizeof in);
	in.command = 1;
	in.leases = leases;
	in.granted = granted;
	in.since_start_ms = since_ms;
	in.grace_ms = READY_GRACE_MS;
	return in;
}

Test(ready, standalone_is_ready_at_once)
{
	struct ready_input in;
	const char *why;

	memset(&in, 0, sizeof in);
	cr_assert_eq(ready_check(&in, &why), 1);
	cr_assert_null(why);
}

Test(ready, wrapped_waits_for_the_first_lease_or_the_grace)
{
	struct ready_input in = wrapped(0, 0, 10);
	const char *why;

	cr_assert_eq(ready_check(&in, &why), 0);
	cr_assert_str_eq(why, "no worker has registered yet");
	in = wrapped(1, 1, 10);
	cr_assert_eq(ready_check(&in, &why), 1);
	/* an app that never registers is not held back for ever */
	in = wrapped(0, 0, READY_GRACE_MS);
	cr_assert_eq(ready_check(&in, &why), 1);
}

Test(ready, every_worker_gone_is_not_ready)
{
	struct ready_input in = wrapped(0, 4, READY_GRACE_MS * 10);
	const char *why;

	cr_assert_eq(ready_check(&in, &why), 0);
	cr_assert(strstr(why, "no live worker") != NULL);
}

Test(ready, an_exited_command_is_not_ready)
{
	struct ready_input in = wrapped(3, 3, 10);
	const char *why;

	in.command_exited = 1;
	cr_assert_eq(ready_check(&in, &why), 0);
	cr_assert_str_eq(why, "COMMAND has exited");
}

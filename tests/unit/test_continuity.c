#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

static const struct continuity_config on = { 1, 300000, 1000 };

static const char final1[] = "# HELP n_total Requests.\n"
			     "# TYPE n_total counter\n"
			     "n_total{code=\"200\"} 50\n"
			     "# TYPE busy gauge\n"
			     "busy 1\n";

/* The served value of n_total{code="200"} for a live answer of value v. */
static double
served(struct carry *c, struct continuity *ct, int v)
{
	struct buf out = { 0 };
	char text[128], *p;
	double d;

	snprintf(text, sizeof text,
	    "# TYPE n_total counter\nn_total{code=\"200\"} %d\n", v);
	carry_rewrite(c, continuity_stamp(ct), text, strlen(text), &out);
	buf_add(&out, "", 1);
	p = strstr(out.data, "n_total{code=\"200\"} ");
	cr_assert_not_null(p, "%s", out.data);
	d = strtod(p + 20, NULL);
	buf_finish(&out);
	return d;
}

Test(continuity, lifetimes_add_up_in_their_slot)
{
	struct continuity *ct;
	struct carry *c;

	ct = continuity_create(4, &on);
	cr_assert_null(continuity_carry(ct, 1, 1, 0), "nothing carried yet");
	cr_assert_eq(continuity_end(ct, 1, final1, strlen(final1), 1000), 0);
	cr_assert_null(continuity_carry(ct, 0, 1, 1000), "other slots: none");
	c = continuity_carry(ct, 1, 1, 1000);
	cr_assert_not_null(c);
	cr_assert_eq(served(c, ct, 3), 53);
	cr_assert_eq(served(c, ct, 7), 57);
	/* killed: no final answer, the last one seen (7) counts */
	continuity_end(ct, 1, NULL, 0, 2000);
	c = continuity_carry(ct, 1, 1, 2000);
	cr_assert_eq(served(c, ct, 1), 58);
	cr_assert_eq(ct->lifetimes, 2);
	cr_assert_null(continuity_carry(ct, 7, 1, 0), "out of range");
	continuity_free(ct);
}

Test(continuity, a_slot_without_a_worker_is_held_then_forgotten)
{
	struct continuity *ct;

	ct = continuity_create(2, &on);
	continuity_end(ct, 0, final1, strlen(final1), 10000);
	cr_assert_not_null(continuity_carry(ct, 0, 0, 10000 + 300000));
	cr_assert_eq(ct->limits.series, 1);
	cr_assert_null(continuity_carry(ct, 0, 0, 10000 + 300001));
	cr_assert_eq(ct->limits.series, 0, "forgotten: memory given back");
	cr_assert_null(continuity_carry(ct, 0, 1, 10000 + 300002));

	/* a live worker keeps it however long */
	continuity_end(ct, 1, final1, strlen(final1), 0);
	cr_assert_not_null(continuity_carry(ct, 1, 1, 999999999));
	/* once without one, its hold time has long passed */
	cr_assert_null(continuity_carry(ct, 1, 0, 999999999));
	cr_assert_null(continuity_carry(ct, 1, 1, 999999999));
	continuity_free(ct);
}

Test(continuity, off_carries_nothing)
{
	struct continuity_config off = on;
	struct continuity *ct;
	struct buf out = { 0 };

	off.on = 0;
	ct = continuity_create(2, &off);
	continuity_end(ct, 0, final1, strlen(final1), 0);
	cr_assert_null(continuity_carry(ct, 0, 1, 0));
	cr_assert_eq(continuity_render_slot(ct, 0, &out), 0);
	cr_assert_eq(continuity_adopt(ct, 0, final1, strlen(final1), 0), -1);
	continuity_free(ct);
}

/* The state file's way through a promfork restart. */
Test(continuity, totals_render_and_are_taken_up_again)
{
	struct continuity *a, *b;
	struct buf out = { 0 };
	struct carry *c;

	a = continuity_create(3, &on);
	continuity_end(a, 2, final1, strlen(final1), 0);
	c = continuity_carry(a, 2, 1, 0);
	/* the live worker's own 9 is not a finished lifetime's */
	cr_assert_eq(served(c, a, 9), 59);
	cr_assert_gt(continuity_render_slot(a, 2, &out), 0);
	buf_add(&out, "", 1);
	cr_assert_str_eq(out.data,
	    "# HELP n_total Requests.\n"
	    "# TYPE n_total counter\n"
	    "n_total{code=\"200\"} 50\n");
	cr_assert_eq(continuity_render_slot(a, 1, &out), 0);

	b = continuity_create(3, &on);
	cr_assert_eq(continuity_adopt(b, 2, out.data, out.len - 1, 5000), 0);
	c = continuity_carry(b, 2, 1, 5000);
	cr_assert_not_null(c);
	cr_assert_eq(served(c, b, 9), 59, "the same as before the restart");
	cr_assert_eq(continuity_adopt(b, 1, "<html>", 6, 5000), -1);
	buf_finish(&out);
	continuity_free(a);
	continuity_free(b);
}

Test(continuity, stamps_increase)
{
	struct continuity *ct;
	uint64_t s1, s2;

	ct = continuity_create(1, &on);
	s1 = continuity_stamp(ct);
	s2 = continuity_stamp(ct);
	cr_assert_gt(s2, s1);
	continuity_free(ct);
}

Test(continuity, the_cap_is_logged_and_counted)
{
	struct continuity_config small = on;
	struct continuity *ct;
	const char *many = "# TYPE a_total counter\na_total{i=\"1\"} 1\n"
			   "a_total{i=\"2\"} 1\na_total{i=\"3\"} 1\n";

	small.max_series = 2;
	ct = continuity_create(2, &small);
	continuity_end(ct, 0, many, strlen(many), 0);
	cr_assert_eq(ct->limits.dropped, 1);
	cr_assert_eq(ct->dropped_logged, 1);
	continuity_end(ct, 1, many, strlen(many), 0);
	cr_assert_eq(ct->limits.dropped, 4, "the cap is for all slots");
	continuity_free(ct);
}

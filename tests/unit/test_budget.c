#include <criterion/criterion.h>

#include "promfork.h"

Test(budget, take_and_give)
{
	struct budget b;

	budget_init(&b, 100);
	cr_assert_eq(budget_take(&b, 60), 0);
	cr_assert_eq(budget_take(&b, 41), -1, "past the max");
	cr_assert_eq(b.used, 60, "a refused take takes nothing");
	cr_assert_eq(budget_take(&b, 40), 0);
	cr_assert(budget_full(&b));
	budget_give(&b, 50);
	cr_assert_not(budget_full(&b));
	cr_assert_eq(b.used, 50);
	cr_assert_eq(b.peak, 100);
}

Test(budget, no_overflow)
{
	struct budget b;

	budget_init(&b, 100);
	cr_assert_eq(budget_take(&b, SIZE_MAX), -1);
	cr_assert_eq(budget_take(&b, 10), 0);
	cr_assert_eq(budget_take(&b, SIZE_MAX - 5), -1);
	cr_assert_eq(b.used, 10);
}

Test(budget, held_answers_count_past_the_max)
{
	struct budget b;

	budget_init(&b, 100);
	budget_hold(&b, 150);
	cr_assert(budget_full(&b));
	cr_assert_eq(budget_take(&b, 1), -1);
	budget_give(&b, 150);
	cr_assert_eq(b.used, 0);
	cr_assert_eq(b.peak, 150);
}

Test(budget, giving_back_more_than_taken_is_fatal, .exit_code = 1)
{
	struct budget b;

	budget_init(&b, 100);
	budget_give(&b, 1);
}

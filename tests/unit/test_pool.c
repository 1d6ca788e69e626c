#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "promfork.h"

/* Ports listed in the array look held by a foreign process. */
static int
probe_busy(uint16_t port, void *arg)
{
	const uint16_t *busy = arg;

	for (; *busy != 0; busy++) {
		if (*busy == port)
			return 0;
	}
	return 1;
}

Test(pool, lowest_free_slot_and_reuse)
{
	uint16_t none[] = { 0 };
	struct pool p;

	pool_init(&p, 9400, 9403, probe_busy, none);
	cr_assert_eq(p.size, 4);
	cr_assert_eq(pool_take(&p), 0);
	cr_assert_eq(pool_take(&p), 1);
	cr_assert_eq(pool_take(&p), 2);
	pool_release(&p, 1);
	cr_assert_eq(pool_free(&p), 2);
	cr_assert_eq(pool_take(&p), 1, "a freed slot is taken again first");
	cr_assert_eq(pool_take(&p), 3);
	cr_assert_eq(pool_take(&p), -1, "exhausted");
	cr_assert_eq(pool_free(&p), 0);
	cr_assert_eq(pool_port(&p, 3), 9403);
	pool_finish(&p);
}

Test(pool, held_ports_are_skipped)
{
	uint16_t busy[] = { 9400, 9402, 0 };
	struct pool p;

	pool_init(&p, 9400, 9403, probe_busy, busy);
	cr_assert_eq(pool_take(&p), 1);
	cr_assert_eq(pool_take(&p), 3);
	cr_assert_eq(pool_take(&p), -1);
	cr_assert_eq(pool_free(&p), 2, "held ports are not ours to count");
	pool_finish(&p);
}

Test(pool, claim_and_bounds)
{
	struct pool p;

	pool_init(&p, 100, 109, NULL, NULL);
	cr_assert_eq(pool_claim(&p, 5), 5);
	cr_assert_eq(pool_claim(&p, 5), -1, "claimed twice");
	cr_assert_eq(pool_claim(&p, -1), -1);
	cr_assert_eq(pool_claim(&p, 10), -1);
	pool_release(&p, 10); /* out of range: ignored */
	pool_release(&p, 4); /* not taken: ignored */
	cr_assert_eq(pool_free(&p), 9);
	cr_assert_eq(pool_slot(&p, 105), 5);
	cr_assert_eq(pool_slot(&p, 99), -1);
	cr_assert_eq(pool_slot(&p, 110), -1);
	cr_assert_eq(pool_take(&p), 0);
	pool_finish(&p);
}

Test(pool, whole_port_space)
{
	struct pool p;

	pool_init(&p, 1, 65535, NULL, NULL);
	cr_assert_eq(p.size, 65535);
	cr_assert_eq(pool_port(&p, 65534), 65535);
	cr_assert_eq(pool_claim(&p, 65534), 65534);
	pool_finish(&p);
}

Test(pool, real_probe_sees_a_listener)
{
	struct sockaddr_in sin = { 0 };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(fd, 1), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	cr_assert_eq(pool_port_bindable(ntohs(sin.sin_port), NULL), 0,
	    "a port with a listener is not bindable");
	close(fd);
	cr_assert_eq(pool_port_bindable(ntohs(sin.sin_port), NULL), 1,
	    "free again once closed");
}

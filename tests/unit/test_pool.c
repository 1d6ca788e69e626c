#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
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
	cr_assert_eq(pool_nfree(&p), 2);
	cr_assert_eq(pool_take(&p), 1, "a freed slot is taken again first");
	cr_assert_eq(pool_take(&p), 3);
	cr_assert_eq(pool_take(&p), -1, "exhausted");
	cr_assert_eq(pool_nfree(&p), 0);
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
	cr_assert_eq(pool_nfree(&p), 2, "held ports are not ours to count");
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
	cr_assert_eq(pool_nfree(&p), 9);
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

/* A socket of family on addr, port 0; returns its fd and *port. */
static int
probe_holder(int family, const char *addr, int reuse, int listening,
    uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int fd = socket(family, SOCK_STREAM, 0), on = 1;

	memset(&ss, 0, sizeof ss);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &sin->sin_addr);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, addr, &sin6->sin6_addr);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	}
	if (reuse)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	cr_assert_eq(bind(fd, (struct sockaddr *)&ss, len), 0, "bind %s: %s",
	    addr, strerror(errno));
	if (listening)
		cr_assert_eq(listen(fd, 1), 0);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*port =
	    ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
				    : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

Test(pool, real_probe_sees_a_listener_on_any_address)
{
	static const struct {
		int family;
		const char *addr;
		int reuse, listening, bindable;
	} cases[] = {
		{ AF_INET, "127.0.0.1", 0, 1, 0 },
		{ AF_INET, "127.0.0.1", 1, 1, 0 },
		{ AF_INET, "0.0.0.0", 1, 1, 0 },
		{ AF_INET6, "::1", 1, 1, 0 },
		{ AF_INET6, "::", 0, 1, 0 },
		/* bound by a worker about to listen, with SO_REUSEADDR: free */
		{ AF_INET, "127.0.0.1", 1, 0, 1 },
		{ AF_INET6, "::1", 1, 0, 1 },
		/* bound without SO_REUSEADDR: a worker could not bind it */
		{ AF_INET, "0.0.0.0", 0, 0, 0 },
	};
	int fd = socket(AF_INET6, SOCK_STREAM, 0), ipv6 = fd != -1;
	size_t i;

	if (ipv6)
		close(fd);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint16_t port;

		if (cases[i].family == AF_INET6 && !ipv6)
			continue;
		fd = probe_holder(cases[i].family, cases[i].addr,
		    cases[i].reuse, cases[i].listening, &port);
		cr_assert_eq(pool_port_bindable(port, NULL), cases[i].bindable,
		    "case %zu: %s reuse=%d listening=%d", i, cases[i].addr,
		    cases[i].reuse, cases[i].listening);
		close(fd);
		cr_assert_eq(pool_port_bindable(port, NULL), 1,
		    "case %zu: free again once closed", i);
	}
}

Test(pool, preferred_slot_is_granted_when_free)
{
	uint16_t busy[] = { 9405, 0 };
	struct pool p;

	pool_init(&p, 9400, 9407, probe_busy, busy);
	cr_assert_eq(pool_take_preferred(&p, 3, 1000), 3);
	cr_assert_eq(pool_take_preferred(&p, 3, 1000), 0,
	    "taken: the usual choice, the lowest free slot");
	cr_assert_eq(pool_take_preferred(&p, 5, 1000), 1,
	    "a preferred slot whose port is held is not handed out");
	cr_assert_eq(pool_take_preferred(&p, 8, 1000), 2, "out of range");
	cr_assert_eq(pool_take_preferred(&p, -1, 1000), 4);
	pool_finish(&p);
}

/*
 * The case: after a gunicorn HUP the new workers hold slots 4-7
 * and the old ones freed 0-3; kill -9 of the worker in slot 5 must give
 * its replacement slot 5, not slot 0.
 */
Test(pool, replacement_after_an_exit_gets_the_freed_slot)
{
	struct pool p;
	int s;

	pool_init(&p, 9400, 9407, NULL, NULL);
	for (s = 0; s < 8; s++)
		cr_assert_eq(pool_take(&p), s);
	for (s = 0; s < 4; s++)
		pool_release_exited(&p, s, 1000);
	pool_release_exited(&p, 5, 20000);
	cr_assert_eq(pool_take_preferred(&p, -1, 20050), 5);

	/* Two deaths at once: each replacement gets one of their slots. */
	pool_release_exited(&p, 7, 30000);
	pool_release_exited(&p, 6, 30001);
	cr_assert_eq(pool_take_preferred(&p, -1, 30100), 6);
	cr_assert_eq(pool_take_preferred(&p, -1, 30100), 7);

	/* Long after: the usual lowest free slot. */
	pool_release_exited(&p, 6, 40000);
	cr_assert_eq(pool_take_preferred(&p, -1, 40000 + POOL_RECENT_MS + 1),
	    0);
	/* A plain release (not an exit) is not remembered. */
	pool_release(&p, 7);
	cr_assert_eq(pool_take_preferred(&p, -1, 60000), 1);
	pool_finish(&p);
}

Test(pool, recently_freed_slot_with_a_held_port_is_skipped)
{
	uint16_t busy[] = { 9402, 0 };
	struct pool p;

	pool_init(&p, 9400, 9403, probe_busy, busy);
	cr_assert_eq(pool_claim(&p, 2), 2);
	cr_assert_eq(pool_claim(&p, 0), 0);
	pool_release_exited(&p, 2, 500);
	pool_release_exited(&p, 0, 400);
	/* 2 is newest, but a foreign process took its port meanwhile. */
	cr_assert_eq(pool_take_preferred(&p, -1, 600), 0);
	pool_finish(&p);
}

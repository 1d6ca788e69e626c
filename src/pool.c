/*
 * The port pool: slot s of the range LOW-HIGH always means port LOW+s, so a
 * worker's label and port never disagree.  Taking a slot picks the lowest
 * free one whose port can be bound right now; ports a foreign process holds
 * are skipped, never handed out.  The probe is a parameter so tests can
 * decide which ports look busy.
 *
 * A slot should outlive its processes: a replacement asks for its slot by
 * index where the server has one (pool_take_preferred), and where it has
 * none the pool remembers which slots a process freed by exiting, so that
 * the replacement a master forks right away gets the slot of the worker it
 * replaces, not merely the lowest free one.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

void
pool_init(struct pool *p, uint16_t low, uint16_t high, pool_probe_fn probe,
    void *arg)
{
	memset(p, 0, sizeof *p);
	p->low = low;
	p->size = (size_t)high - low + 1;
	p->used = xcalloc(p->size, 1);
	p->exited_ms = xcalloc(p->size, sizeof *p->exited_ms);
	p->probe = probe;
	p->probe_arg = arg;
}

void
pool_finish(struct pool *p)
{
	free(p->used);
	p->used = NULL;
	free(p->exited_ms);
	p->exited_ms = NULL;
}

/* Is slot s free and its port bindable now?  Takes it if so. */
static int
pool_take_one(struct pool *p, size_t s)
{
	if (p->used[s])
		return 0;
	if (p->probe != NULL && !p->probe(pool_port(p, (int)s), p->probe_arg)) {
		log_debug("port %u is held by another process, skipped",
		    pool_port(p, (int)s));
		return 0;
	}
	p->used[s] = 1;
	p->nused++;
	p->exited_ms[s] = 0;
	return 1;
}

int
pool_take(struct pool *p)
{
	size_t s;

	for (s = 0; s < p->size; s++) {
		if (pool_take_one(p, s))
			return (int)s;
	}
	return -1;
}

/*
 * Takes preferred when it is free (-1: no preference), else the slot a
 * process freed most recently by exiting, if that was less than
 * POOL_RECENT_MS before now_ms, else the lowest free slot.
 */
int
pool_take_preferred(struct pool *p, int preferred, uint64_t now_ms)
{
	size_t s, best = p->size;
	uint64_t when = 0;

	if (preferred >= 0 && (size_t)preferred < p->size &&
	    pool_take_one(p, (size_t)preferred))
		return preferred;
	for (s = 0; s < p->size; s++) {
		if (p->used[s] || p->exited_ms[s] == 0 ||
		    p->exited_ms[s] + POOL_RECENT_MS < now_ms ||
		    p->exited_ms[s] <= when)
			continue;
		best = s;
		when = p->exited_ms[s];
	}
	if (best != p->size && pool_take_one(p, best))
		return (int)best;
	return pool_take(p);
}

/* Takes one given slot, as discovery and re-adoption need. */
int
pool_claim(struct pool *p, int slot)
{
	if (slot < 0 || (size_t)slot >= p->size || p->used[slot])
		return -1;
	p->used[slot] = 1;
	p->nused++;
	return slot;
}

void
pool_release(struct pool *p, int slot)
{
	if (slot < 0 || (size_t)slot >= p->size || !p->used[slot])
		return;
	p->used[slot] = 0;
	p->nused--;
}

/* Remembers that slot's process exited at now_ms (never 0), freeing it. */
void
pool_release_exited(struct pool *p, int slot, uint64_t now_ms)
{
	if (slot < 0 || (size_t)slot >= p->size || !p->used[slot])
		return;
	pool_release(p, slot);
	p->exited_ms[slot] = now_ms != 0 ? now_ms : 1;
}

uint16_t
pool_port(const struct pool *p, int slot)
{
	return (uint16_t)(p->low + slot);
}

size_t
pool_nfree(const struct pool *p)
{
	return p->size - p->nused;
}

/*
 * Can this family's wildcard address take the port?  For AF_INET6 the
 * socket is dual-stack, so one bind asks for IPv4 and IPv6 at once (an
 * IPv4 listener on any address conflicts with it, as an IPv6 one does).
 * -1: this kernel has no such family.
 */
static int
pool_try_bind(int family, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, on = 1, off = 0, ok;

	memset(&ss, 0, sizeof ss);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		len = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		len = sizeof *sin6;
	}
	if ((fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return errno == EAFNOSUPPORT ? -1 : 0;
	/* Workers bind with SO_REUSEADDR: only a listener should count. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0 ||
	    errno == EADDRNOTAVAIL;
	close(fd);
	return ok;
}

/* The real probe: can a worker bind this port on every address? */
int
pool_port_bindable(uint16_t port, void *arg)
{
	int ok = pool_try_bind(AF_INET6, port);

	return ok != -1 ? ok : pool_try_bind(AF_INET, port) == 1;
}

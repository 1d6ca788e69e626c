/*
 * The port pool: slot s of the range LOW-HIGH always means port LOW+s, so a
 * worker's label and port never disagree.  Taking a slot picks the lowest
 * free one whose port can be bound right now; ports a foreign process holds
 * are skipped, never handed out.  The probe is a parameter so tests can
 * decide which ports look busy.
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
	p->probe = probe;
	p->probe_arg = arg;
}

void
pool_finish(struct pool *p)
{
	free(p->used);
	p->used = NULL;
}

int
pool_take(struct pool *p)
{
	size_t s;

	for (s = 0; s < p->size; s++) {
		if (p->used[s])
			continue;
		if (p->probe != NULL &&
		    !p->probe(pool_port(p, (int)s), p->probe_arg)) {
			log_debug("port %u is held by another process, "
				  "skipped",
			    pool_port(p, (int)s));
			continue;
		}
		p->used[s] = 1;
		p->nused++;
		return (int)s;
	}
	return -1;
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

/* libevent chat server for the fan-out benchmark: bufferevents, as a libevent user
 * writes one. Every line a client sends goes to every other client as it is,
 * through bufferevent_write (a copy into the receiver's output buffer, written by
 * the loop when the socket is writable). A receiver whose output would pass 4 MiB
 * is freed.
 *
 * usage: chat_libevent PORT   listens on 127.0.0.1:PORT; SIGINT/SIGTERM end it. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LINE_MAX_LEN 8192
#define QUEUE_CAP ((size_t)4 << 20)

struct client {
    struct bufferevent *bev;
    struct client *prev, *next;
};

static struct event_base *base;
static struct client *clients;

static void drop(struct client *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    free(c);
}

static void broadcast(struct client *from, const char *line, size_t len)
{
    struct client *c, *next;

    for (c = clients; c != NULL; c = next) {
        next = c->next;
        if (c == from)
            continue;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) + len > QUEUE_CAP ||
            bufferevent_write(c->bev, line, len) < 0)
            drop(c);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char line[LINE_MAX_LEN + 1];

    for (;;) {
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > LINE_MAX_LEN)
                drop(c);
            return;
        }
        size_t len = (size_t)eol.pos + 1;
        if (len > sizeof(line)) {
            drop(c);
            return;
        }
        evbuffer_remove(in, line, len);
        broadcast(c, line, len);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        drop(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct client *c = calloc(1, sizeof(*c));
    int one = 1;

    (void)l, (void)sa, (void)len, (void)arg;
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->next = clients;
    if (clients != NULL)
        clients->prev = c;
    clients = c;
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what, (void)arg;
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    struct evconnlistener *l;

    if (argc != 2) {
        fprintf(stderr, "usage: chat_libevent PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    base = event_base_new();
    l = evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                4096, (struct sockaddr *)&addr, sizeof(addr));
    if (base == NULL || l == NULL) {
        fprintf(stderr, "chat_libevent: cannot listen\n");
        return 1;
    }
    struct event *si = evsignal_new(base, SIGINT, on_signal, NULL);
    struct event *st = evsignal_new(base, SIGTERM, on_signal, NULL);
    event_add(si, NULL);
    event_add(st, NULL);
    event_base_dispatch(base);
    return 0;
}

/* Unix domain stream sockets: servers and clients on a path and on an abstract
 * name, with real peers (Python's socket.AF_UNIX, Node's net, socat), the socket
 * file's life (stale file replaced, other files refused and left alone, removed at
 * close only if still ours, mode), peer credentials, admission by uid, and the
 * TCP-only options refused. Run on both backends (TETHER_BACKEND=io_uring). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "peer.h"

static tt_loop_t *loop;
static char dir[64];
static char path[128];
static char text[160]; /* "unix:" + path */

static void setup(void)
{
    strcpy(dir, "/tmp/tt-unix-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    snprintf(text, sizeof(text), "unix:%s", path);
    cr_assert_eq(tt_loop_init(&loop), 0);
}

static void teardown(void)
{
    char cmd[128];
    if (loop != NULL) {
        th_run(loop, 5000);
        tt_loop_close(loop);
        loop = NULL;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

static tt_addr_t addr_of(const char *t)
{
    tt_addr_t a;
    cr_assert_eq(tt_addr_parse_hostport(&a, t), 0, "parse %s", t);
    return a;
}

/* ---- an echo server that records what it saw ------------------------------------ */

typedef struct seen {
    int opens, closes, refused, refused_err;
    bool has_cred;
    tt_peer_cred_t cred;
    tt_conn_stats_t st_open;   /* stats in on_open */
    tt_conn_stats_t st_close;  /* stats in on_close */
    tt_close_info_t info;
    uint64_t bytes;
    volatile bool closed;
} seen_t;

static seen_t S;

static void e_open(tt_conn_t *c)
{
    S.opens++;
    S.has_cred = tt_conn_peer_cred(c, &S.cred) == 0;
    tt_conn_get_stats(c, &S.st_open);
}
static void e_data(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)p;
    S.bytes += n;
    tt_send(c, d, n);
}
static void e_message(tt_conn_t *c, const void *m, size_t n)
{
    S.bytes += n;
    tt_send_message(c, m, n);
}
static void e_close(tt_conn_t *c, const tt_close_info_t *info)
{
    S.closes++;
    S.info = *info;
    tt_conn_get_stats(c, &S.st_close);
    S.closed = true;
}
static void e_event(tt_server_t *srv, int ev, int err, const tt_addr_t *peer)
{
    (void)srv, (void)peer;
    if (ev == TT_SERVER_REFUSED) {
        S.refused++;
        S.refused_err = err;
    }
}

static const tt_conn_handlers_t ECHO = {.on_open = e_open, .on_data = e_data,
                                        .on_message = e_message, .on_close = e_close};

static tt_server_t *listen_echo(const char *where, const tt_server_opts_t *o)
{
    tt_addr_t a = addr_of(where);
    tt_server_t *srv = NULL;
    tt_server_opts_t opts = o != NULL ? *o : (tt_server_opts_t){0};
    opts.on_event = e_event;
    memset(&S, 0, sizeof(S));
    int err = tt_server_listen(loop, &a, &opts, &ECHO, NULL, &srv);
    cr_assert_eq(err, 0, "listen %s: %s", where, tt_strerror(err));
    return srv;
}

/* Run `cmd` (a real peer) while the loop runs until the server saw a close; its
 * stdout (one short line) into out. */
static void run_peer(const char *cmd, char *out, size_t size)
{
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    cr_assert(th_run_until(loop, &S.closed, 10000), "no close from the peer: %s", cmd);
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "peer failed: %s (output '%s')", cmd, out);
}

TestSuite(unixsock, .init = setup, .fini = teardown, .timeout = 60);

/* ---- real peers ------------------------------------------------------------------ */

Test(unixsock, python_peer_echo_stats_and_credentials)
{
    char cmd[512], out[128], fmt[TT_ADDR_STRLEN];
    tt_server_t *srv = listen_echo(text, NULL);
    tt_addr_t bound;

    cr_assert_eq(tt_server_addr(srv, &bound), 0);
    cr_assert_eq(tt_addr_format(&bound, fmt, sizeof(fmt)), (int)strlen(text));
    cr_assert_str_eq(fmt, text, "the bound address reads as the path");
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import socket,os\n"
             "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect(\"%s\")\n"
             "s.sendall(b\"hello unix\"); s.shutdown(socket.SHUT_WR); b=b\"\"\n"
             "while True:\n"
             "  d=s.recv(100)\n"
             "  if not d: break\n"
             "  b+=d\n"
             "print(b.decode(), os.getpid())'",
             path);
    run_peer(cmd, out, sizeof(out));
    int pid = 0;
    cr_assert_eq(sscanf(out, "hello unix %d", &pid), 1, "echo: '%s'", out);
    cr_assert(S.has_cred, "credentials in on_open");
    cr_expect_eq(S.cred.pid, pid, "SO_PEERCRED pid %d, python's %d", S.cred.pid, pid);
    cr_expect_eq(S.cred.uid, getuid());
    cr_expect_eq(S.cred.gid, getgid());
    /* Stats: the addresses as the kernel names them, credentials even in on_close. */
    cr_expect_eq(tt_addr_format(&S.st_open.local, fmt, sizeof(fmt)), (int)strlen(text));
    cr_expect_str_eq(fmt, text);
    cr_expect(tt_addr_is_unix(&S.st_open.peer));
    cr_expect_eq(tt_addr_format(&S.st_open.peer, fmt, sizeof(fmt)), 5);
    cr_expect_str_eq(fmt, "unix:", "an unnamed client");
    cr_expect(S.st_close.has_cred);
    cr_expect_eq(S.st_close.cred.pid, pid);
    cr_expect_eq(S.st_close.bytes_in, 10);
    cr_expect_eq(S.st_close.bytes_out, 10);
    cr_expect_eq(S.info.kind, TT_CLOSE_PEER_CLOSED);
    tt_server_close(srv);
}

static void reset_on_data(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)d, (void)p;
    S.bytes += n;
    /* More than the socket takes: what was written is already in the peer's
     * receive queue, where no reset can take it back; the rest is dropped. */
    size_t big = 8u << 20;
    char *buf = calloc(1, big);
    tt_send(c, buf, big);
    free(buf);
    tt_destroy(c, TT_DESTROY_RESET);
}

Test(unixsock, destroy_reset_closes_at_once_and_the_peer_reads_end_of_stream)
{
    char cmd[512], out[128];
    tt_conn_handlers_t h = ECHO;
    tt_addr_t a = addr_of(text);
    tt_server_t *srv = NULL;

    h.on_data = reset_on_data;
    memset(&S, 0, sizeof(S));
    cr_assert_eq(tt_server_listen(loop, &a, NULL, &h, NULL, &srv), 0);
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import socket\n"
             "s=socket.socket(socket.AF_UNIX); s.connect(\"%s\"); s.sendall(b\"x\")\n"
             "b=b\"\"\n"
             "try:\n"
             "  while True:\n"
             "    d=s.recv(100)\n"
             "    if not d: break\n"
             "    b+=d\n"
             "  print(len(b), \"eof\")\n"
             "except ConnectionResetError: print(len(b), \"reset\")'",
             path);
    run_peer(cmd, out, sizeof(out));
    /* No RST on a Unix socket: nothing was unread on our side, so end of stream,
     * after what the kernel already had. */
    unsigned long got = 0;
    char how[16] = "";
    cr_assert_eq(sscanf(out, "%lu %15s", &got, how), 2, "peer said '%s'", out);
    cr_expect_str_eq(how, "eof");
    cr_expect_eq(S.info.kind, TT_CLOSE_LOCAL_DESTROY);
    cr_expect_gt(S.info.bytes_written, 0);
    cr_expect_eq(got, S.info.bytes_written, "the peer read exactly what the kernel had");
    cr_expect_eq(S.info.bytes_unsent, (8u << 20) - S.info.bytes_written, "the rest dropped");
    tt_server_close(srv);
}

Test(unixsock, node_net_client_on_a_path)
{
    char cmd[512], out[128];
    tt_server_t *srv = listen_echo(text, NULL);

    snprintf(cmd, sizeof(cmd),
             "node -e 'const c=require(\"net\").createConnection(\"%s\");let b=\"\";"
             "c.on(\"connect\",()=>c.end(\"from node\"));c.on(\"data\",d=>b+=d);"
             "c.on(\"end\",()=>console.log(b))'",
             path);
    run_peer(cmd, out, sizeof(out));
    cr_expect_str_eq(out, "from node\n");
    cr_expect_eq(S.bytes, 9);
    tt_server_close(srv);
}

Test(unixsock, abstract_name_with_socat_and_no_file)
{
    char name[64], where[80], cmd[256], out[64];
    struct stat st;

    snprintf(name, sizeof(name), "tether-test-%d", (int)getpid());
    snprintf(where, sizeof(where), "unix:@%s", name);
    tt_server_t *srv = listen_echo(where, NULL);
    tt_addr_t bound;
    char fmt[TT_ADDR_STRLEN];
    cr_assert_eq(tt_server_addr(srv, &bound), 0);
    tt_addr_format(&bound, fmt, sizeof(fmt));
    cr_expect_str_eq(fmt, where);
    cr_expect_null(tt_addr_unix_path(&bound));
    snprintf(cmd, sizeof(cmd), "printf abstract | socat -t 5 - ABSTRACT-CONNECT:%s", name);
    run_peer(cmd, out, sizeof(out));
    cr_expect_str_eq(out, "abstract");
    cr_expect(S.has_cred);
    /* The name is taken while we listen; released at close. */
    tt_server_t *second = NULL;
    tt_addr_t a = addr_of(where);
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &second), -EADDRINUSE);
    tt_server_close(srv);
    th_run(loop, 2000);
    cr_assert_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &second), 0);
    tt_server_close(second);
    cr_expect_neq(lstat(name, &st), 0, "no file for an abstract name");
}

/* ---- a tether client: send_file, framing, credentials of the server ------------- */

typedef struct client {
    int opens, msgs;
    uint64_t got;
    char buf[64];
    size_t nbuf;
    bool has_cred;
    tt_peer_cred_t cred;
    int nodelay, keepalive, user_timeout, ka_params, liveness, detect;
    volatile bool closed;
    tt_close_info_t info;
} client_t;

static client_t C;

static void c_open(tt_conn_t *c)
{
    tt_liveness_opts_t ka = {.keepalive_idle_s = 1, .keepalive_intvl_s = 1, .keepalive_cnt = 1};
    C.opens++;
    C.has_cred = tt_conn_peer_cred(c, &C.cred) == 0;
    C.nodelay = tt_conn_set_nodelay(c, true);
    C.keepalive = tt_conn_set_keepalive(c, true);
    C.user_timeout = tt_conn_set_user_timeout(c, 1000);
    C.ka_params = tt_conn_set_keepalive_params(c, 1, 1, 1);
    C.liveness = tt_conn_set_liveness(c, &ka);
    C.detect = tt_conn_set_detect_within(c, 3000);
}
static void c_data(tt_conn_t *c, const void *d, size_t n, size_t p)
{
    (void)c, (void)p;
    if (C.nbuf + n < sizeof(C.buf)) {
        memcpy(C.buf + C.nbuf, d, n);
        C.nbuf += n;
    }
    C.got += n;
}
static void c_message(tt_conn_t *c, const void *m, size_t n)
{
    (void)m;
    C.msgs++;
    C.got += n;
    if (C.msgs == 3)
        tt_end(c, NULL, 0);
}
static void c_close(tt_conn_t *c, const tt_close_info_t *info)
{
    (void)c;
    C.info = *info;
    C.closed = true;
}

static const tt_conn_handlers_t CLIENT = {.on_open = c_open, .on_data = c_data,
                                          .on_message = c_message, .on_close = c_close};

Test(unixsock, tether_client_send_file_and_tcp_only_options_refused)
{
    char fpath[128];
    enum { SIZE = 1 << 20 };
    char *blob = malloc(SIZE);
    tt_conn_t *c;

    snprintf(fpath, sizeof(fpath), "%s/blob", dir);
    th_pattern(blob, SIZE, 0);
    int fd = open(fpath, O_CREAT | O_RDWR | O_TRUNC, 0600);
    cr_assert_eq(write(fd, blob, SIZE), SIZE);
    free(blob);
    tt_server_t *srv = listen_echo(text, &(tt_server_opts_t){.detect_within_ms = 3000});
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c), 0);
    cr_assert_eq(tt_send_file(c, fd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END), 0);
    cr_assert(th_run_until(loop, &C.closed, 20000));
    cr_assert(th_run_until(loop, &S.closed, 5000));
    cr_expect_eq(C.opens, 1);
    cr_expect_eq(C.info.kind, TT_CLOSE_LOCAL_END, "client close: %s",
                 tt_close_kind_name(C.info.kind));
    cr_expect_eq(S.st_close.bytes_in, SIZE);
    cr_expect_eq(C.got, SIZE, "the whole file came back");
    cr_expect_eq(C.info.bytes_written, SIZE);
    /* The client sees the server process. */
    cr_expect(C.has_cred);
    cr_expect_eq(C.cred.pid, getpid());
    cr_expect(S.has_cred);
    cr_expect_eq(S.cred.pid, getpid());
    /* TCP-only options: refused, not silently accepted. */
    cr_expect_eq(C.nodelay, -EOPNOTSUPP);
    cr_expect_eq(C.keepalive, -EOPNOTSUPP);
    cr_expect_eq(C.user_timeout, -EOPNOTSUPP);
    cr_expect_eq(C.ka_params, -EOPNOTSUPP);
    cr_expect_eq(C.liveness, -EOPNOTSUPP);
    cr_expect_eq(C.detect, 0, "the knob derives only what applies");
    tt_server_close(srv);
}

Test(unixsock, framing_both_ends)
{
    tt_frame_opts_t fo = {.kind = TT_FRAME_LENGTH, .length = {.size = 4, .strip = 4}};
    tt_conn_t *c;
    tt_addr_t a = addr_of(text);

    tt_server_t *srv = listen_echo(text, &(tt_server_opts_t){.frame = &fo});
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect(loop, &a, NULL, &CLIENT, NULL, &c), 0);
    cr_assert_eq(tt_conn_set_framing(c, &fo), 0);
    cr_assert_eq(tt_send_message(c, "one", 3), 0);
    cr_assert_eq(tt_send_message(c, "two", 3), 0);
    cr_assert_eq(tt_send_message(c, "three", 5), 0);
    cr_assert(th_run_until(loop, &C.closed, 10000));
    cr_expect_eq(C.msgs, 3);
    cr_expect_eq(C.got, 11);
    cr_assert(th_run_until(loop, &S.closed, 5000));
    cr_expect_eq(S.st_close.messages_in, 3);
    cr_expect_eq(S.st_close.messages_out, 3);
    tt_server_close(srv);
}

/* ---- broadcast and heartbeats ------------------------------------------------------ */

Test(unixsock, broadcast_reaches_every_client_and_heartbeats_go_out)
{
    tt_liveness_opts_t lo = {.heartbeat_ms = 100, .ping = "PING\n", .ping_len = 5};
    tt_conn_t *c[3];
    client_t got[3];

    tt_server_t *srv = listen_echo(text, &(tt_server_opts_t){.liveness = &lo});
    for (int i = 0; i < 3; i++) {
        memset(&C, 0, sizeof(C));
        cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c[i]), 0);
        uint64_t until = th_now_ms() + 5000;
        while (tt_server_conn_count(srv) < (size_t)i + 1 && th_now_ms() < until)
            tt_loop_run(loop, TT_RUN_ONCE);
    }
    cr_assert_eq(tt_server_conn_count(srv), 3);
    /* Every client shares C: count what all of them got. */
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_server_broadcast(srv, "all\n", 4, NULL), 3);
    uint64_t until = th_now_ms() + 5000;
    while (C.got < 12 + 3 * 5 && th_now_ms() < until)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect_geq(C.got, 12 + 3 * 5, "broadcast and a heartbeat each: %llu bytes",
                  (unsigned long long)C.got);
    cr_expect_eq(memcmp(C.buf, "all\n", 4), 0, "first bytes: %.*s", (int)C.nbuf, C.buf);
    (void)got;
    for (int i = 0; i < 3; i++)
        tt_destroy(c[i], 0);
    tt_server_close(srv);
}

/* ---- the socket file ---------------------------------------------------------------- */

/* A socket file nothing listens on: what a killed server leaves behind. */
static void make_stale(const char *p)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strcpy(sun.sun_path, p);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
}

Test(unixsock, stale_file_replaced_live_socket_refused_file_removed_at_close)
{
    struct stat st, st2;
    tt_server_t *second = (tt_server_t *)0x1;
    tt_addr_t a = addr_of(text);

    make_stale(path);
    cr_assert_eq(lstat(path, &st), 0);
    tt_server_t *srv = listen_echo(text, NULL);
    cr_assert_eq(lstat(path, &st2), 0);
    cr_expect(S_ISSOCK(st2.st_mode));
    /* The file answers now: a blocking connect lands in the backlog. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    int probe = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_expect_eq(connect(probe, (struct sockaddr *)&sun, sizeof(sun)), 0,
                 "the stale file was not replaced by a live socket");
    close(probe);
    /* A live server answers there: refused, its file untouched. */
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &second), -EADDRINUSE);
    cr_expect_eq(second, (tt_server_t *)0x1);
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect_eq(st.st_ino, st2.st_ino);
    /* The live check connected once; let the loop see it go. */
    th_run_until(loop, &S.closed, 2000);
    tt_server_close(srv);
    cr_expect_neq(lstat(path, &st), 0, "the file is removed at close");
    cr_expect_eq(errno, ENOENT);
}

Test(unixsock, shutdown_removes_the_file)
{
    struct stat st;
    tt_server_t *srv = listen_echo(text, NULL);
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert_eq(tt_server_shutdown(srv, 1000, NULL, NULL), 0);
    cr_expect_neq(lstat(path, &st), 0, "not listening any more: the file goes at once");
    th_run(loop, 3000);
}

Test(unixsock, a_file_replaced_meanwhile_is_not_removed_at_close)
{
    struct stat st;
    tt_server_t *srv = listen_echo(text, NULL);
    cr_assert_eq(unlink(path), 0);
    make_stale(path); /* another server's file now */
    tt_server_close(srv);
    cr_expect_eq(lstat(path, &st), 0, "not ours: left in place");
    cr_expect(S_ISSOCK(st.st_mode));
}

Test(unixsock, other_files_at_the_path_are_refused_and_left_untouched)
{
    char target[160], got[160];
    struct stat st;
    tt_server_t *srv = (tt_server_t *)0x1;
    tt_addr_t a = addr_of(text);

    /* A regular file. */
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    cr_assert_eq(write(fd, "data", 4), 4);
    close(fd);
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &srv), -EEXIST);
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect(S_ISREG(st.st_mode));
    cr_expect_eq(st.st_size, 4);
    cr_assert_eq(unlink(path), 0);
    /* A directory. */
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &srv), -EEXIST);
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect(S_ISDIR(st.st_mode));
    cr_assert_eq(rmdir(path), 0);
    /* A symlink to a stale socket: never followed, neither end removed. */
    snprintf(target, sizeof(target), "%s/target.sock", dir);
    make_stale(target);
    cr_assert_eq(symlink(target, path), 0);
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &srv), -EEXIST);
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
    ssize_t n = readlink(path, got, sizeof(got) - 1);
    cr_assert_gt(n, 0);
    got[n] = '\0';
    cr_expect_str_eq(got, target);
    cr_expect_eq(lstat(target, &st), 0, "the symlink's target is still there");
    cr_assert_eq(unlink(path), 0);
    /* A dangling symlink. */
    cr_assert_eq(symlink("/nonexistent/x", path), 0);
    cr_expect_eq(tt_server_listen(loop, &a, NULL, &ECHO, NULL, &srv), -EEXIST);
    cr_expect_eq(lstat(path, &st), 0);
    cr_expect_eq(srv, (tt_server_t *)0x1, "*out untouched on failure");
    cr_expect_eq(tt_loop_handle_count(loop), 0);
}

/* Can user 65534 connect to the socket at `path`? (socat as that user.) */
static bool other_user_connects(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "setpriv --reuid=65534 --regid=65534 --clear-groups "
             "socat -u OPEN:/dev/null UNIX-CONNECT:%s 2>/dev/null",
             path);
    int st = system(cmd);
    return st == 0;
}

Test(unixsock, mode_0600_keeps_other_users_out)
{
    struct stat st;

    if (getuid() != 0)
        cr_skip_test("needs root to run a client as another user");
    cr_assert_eq(chmod(dir, 0755), 0);
    mode_t old = umask(022);
    tt_server_t *srv = listen_echo(text, &(tt_server_opts_t){.unix_mode = 0600});
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
    cr_expect(!other_user_connects(), "user 65534 connected to a 0600 socket");
    tt_server_close(srv);
    /* The same user on a 0666 socket gets in: the test can tell the two apart. */
    srv = listen_echo(text, &(tt_server_opts_t){.unix_mode = 0666});
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0666, "the umask does not take bits off: %o",
                 st.st_mode & 07777);
    cr_expect(other_user_connects(), "user 65534 could not connect to a 0666 socket");
    th_run_until(loop, &S.closed, 5000);
    tt_server_close(srv);
    umask(old);
}

/* ---- admission ---------------------------------------------------------------------- */

Test(unixsock, cidr_lists_do_not_apply_uid_list_does)
{
    tt_conn_t *c;
    tt_server_t *srv = listen_echo(text, NULL);

    cr_expect_eq(tt_server_allow(srv, "127.0.0.0/8"), -EOPNOTSUPP);
    cr_expect_eq(tt_server_deny(srv, "0.0.0.0/0"), -EOPNOTSUPP);
    cr_assert_eq(tt_server_allow_uid(srv, getuid() + 12345), 0);
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c), 0);
    cr_assert(th_run_until(loop, &C.closed, 5000));
    cr_expect_eq(S.refused, 1);
    cr_expect_eq(S.refused_err, -EACCES);
    cr_expect_eq(S.opens, 0);
    /* Our own uid on the list: admitted. */
    cr_assert_eq(tt_server_allow_uid(srv, getuid()), 0);
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c), 0);
    uint64_t until = th_now_ms() + 5000;
    while (S.opens == 0 && th_now_ms() < until)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect_eq(S.opens, 1);
    tt_destroy(c, 0);
    tt_server_close(srv);
}

static int audit_events;
static char audit_last[TT_ADDR_STRLEN];
static int audit_cb(tt_loop_t *l, tt_audit_event_t ev, const tt_addr_t *a, void *arg)
{
    (void)l, (void)arg;
    audit_events |= 1 << ev;
    if (ev == TT_AUDIT_BIND)
        tt_addr_format(a, audit_last, sizeof(audit_last));
    return 0;
}

Test(unixsock, audit_hook_sees_unix_addresses_and_tcp_only_server_options_refused)
{
    tt_addr_t a = addr_of(text);
    tt_server_t *srv = NULL;
    tt_liveness_opts_t ka = {.keepalive_idle_s = 5, .keepalive_intvl_s = 1, .keepalive_cnt = 3};
    tt_liveness_opts_t ut = {.user_timeout_ms = 1000};
    tt_conn_t *c;

    cr_expect_eq(tt_server_listen(loop, &a, &(tt_server_opts_t){.defer_accept_s = 1}, &ECHO,
                                  NULL, &srv), -EOPNOTSUPP);
    cr_expect_eq(tt_server_listen(loop, &a, &(tt_server_opts_t){.reuseport = true}, &ECHO, NULL,
                                  &srv), -EOPNOTSUPP);
    cr_expect_eq(tt_server_listen(loop, &a, &(tt_server_opts_t){.max_conns_per_ip = 2}, &ECHO,
                                  NULL, &srv), -EOPNOTSUPP);
    cr_expect_eq(tt_server_listen(loop, &a, &(tt_server_opts_t){.liveness = &ka}, &ECHO, NULL,
                                  &srv), -EOPNOTSUPP);
    cr_expect_eq(tt_server_listen(loop, &a, &(tt_server_opts_t){.liveness = &ut}, &ECHO, NULL,
                                  &srv), -EOPNOTSUPP);
    cr_expect_eq(tt_server_listen(loop, &a, &(tt_server_opts_t){.unix_mode = 010000}, &ECHO,
                                  NULL, &srv), -EINVAL);
    cr_expect_null(srv);
    struct stat st;
    cr_expect_neq(lstat(path, &st), 0, "a refused listen leaves no file");

    cr_assert_eq(tt_loop_set_audit(loop, audit_cb, NULL), 0);
    srv = listen_echo(text, NULL);
    cr_expect_str_eq(audit_last, text);
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c), 0);
    uint64_t until = th_now_ms() + 5000;
    while (S.opens == 0 && th_now_ms() < until)
        tt_loop_run(loop, TT_RUN_ONCE);
    cr_expect(audit_events & (1 << TT_AUDIT_CONNECT));
    cr_expect(audit_events & (1 << TT_AUDIT_ACCEPT));
    tt_destroy(c, 0);
    tt_server_close(srv);
    tt_loop_set_audit(loop, NULL, NULL);
}

Test(unixsock, connect_failures_are_reported_from_the_loop)
{
    tt_conn_t *c;
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c), 0);
    cr_assert(th_run_until(loop, &C.closed, 5000));
    cr_expect_eq(C.info.kind, TT_CLOSE_CONNECT_FAILED);
    cr_expect_eq(C.info.error, -ENOENT);
    make_stale(path);
    memset(&C, 0, sizeof(C));
    cr_assert_eq(tt_connect_host(loop, text, 0, NULL, &CLIENT, NULL, &c), 0);
    cr_assert(th_run_until(loop, &C.closed, 5000));
    cr_expect_eq(C.info.error, -ECONNREFUSED);
    cr_expect_eq(C.opens, 0);
}

/* Send a file and close: "send then close" with sendfile(2).
 *
 *   ./send_file ADDR:PORT FILE
 *
 * tt_send_file with TT_FILE_CLOSE_FD | TT_FILE_THEN_END queues the file (read by
 * the kernel straight into the socket, no copy through user space), hands the fd
 * to the connection, and half-closes (FIN) after the last byte. The connection
 * closes when the receiver has closed its side too; the close report then says how
 * many bytes reached the kernel and how many the receiver had acknowledged. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tether.h"

static int file_fd = -1; /* ours until handed to the connection */
static off_t file_size;
static int status = 1;

static void on_open(tt_conn_t *conn)
{
    int fd = file_fd;
    file_fd = -1; /* from this call on the connection owns fd, even if the call fails */
    int err = tt_send_file(conn, fd, 0, TT_FILE_TO_EOF, TT_FILE_CLOSE_FD | TT_FILE_THEN_END);
    if (err < 0) {
        fprintf(stderr, "send: %s\n", tt_strerror(err));
        tt_destroy(conn, 0);
    }
}

static void on_close(tt_conn_t *conn, const tt_close_info_t *info)
{
    (void)conn;
    printf("closed: %s%s%s\n", tt_close_kind_name(info->kind), info->error ? ": " : "",
           info->error ? tt_strerror(info->error) : "");
    printf("%llu of %lld bytes written, %llu acknowledged by the receiver\n",
           (unsigned long long)info->bytes_written, (long long)file_size,
           (unsigned long long)info->bytes_acked);
    /* Graceful and complete: every byte reached the kernel, our FIN followed the last
     * one and the receiver closed too. The kernel still delivers what is in flight
     * (bytes_unacked) after close(2). */
    if (info->kind == TT_CLOSE_LOCAL_END && info->bytes_written == (uint64_t)file_size)
        status = 0;
}

int main(int argc, char **argv)
{
    tt_conn_handlers_t h = {.on_open = on_open, .on_close = on_close};
    struct stat st;
    tt_loop_t *loop;
    tt_conn_t *conn;
    tt_addr_t addr;
    int err;

    if (argc != 3 || tt_addr_parse_hostport(&addr, argv[1]) < 0) {
        fprintf(stderr, "usage: %s ADDR:PORT FILE\n", argv[0]);
        return 2;
    }
    file_fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (file_fd < 0 || fstat(file_fd, &st) < 0) {
        perror(argv[2]);
        return 1;
    }
    file_size = st.st_size;
    if ((err = tt_loop_init(&loop)) < 0 ||
        (err = tt_connect(loop, &addr, NULL, &h, NULL, &conn)) < 0) {
        fprintf(stderr, "connect %s: %s\n", argv[1], tt_strerror(err));
        return 1;
    }
    tt_loop_run(loop, TT_RUN_DEFAULT); /* until on_close */
    if (file_fd >= 0)                  /* the connect failed: never handed over */
        close(file_fd);
    tt_loop_close(loop);
    return status;
}

/* The tether tool over TLS, as a user runs it: echo and chat with --tls-cert and
 * --tls-key, cat/send/bench with --tls, against each other and against real
 * peers (openssl s_client, Python's ssl module). Certificates are made by each
 * test with the openssl CLI in its own directory (a CA, two server certificates
 * for localhost and 127.0.0.1 with different serials), never kept. Each scenario
 * is a short shell script; every process in it is bounded by timeout(1), and the
 * script says what went wrong. Servers run under `timeout --foreground` (see
 * test_unix_cli.c: a second SIGTERM would cut their graceful shutdown short). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TETHER TT_BUILD_DIR "/tether"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/tt-tlscli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

TestSuite(tlscli, .init = setup, .fini = teardown, .timeout = 90);

/* The helpers every script starts with:
 *   mkcerts           ca.pem; srv.pem/srv.key (serial 1001) and srv2.pem/srv2.key
 *                     (serial 2002), both for DNS:localhost and IP:127.0.0.1
 *   start_echo ARGS   tether echo -v --listen 127.0.0.1:0 ARGS in the background
 *                     (ECHO its pid, PORT its port); out/err in echo.out/echo.err
 *   serial            the serial of the certificate a new s_client gets from PORT
 *   one_line FILE     fail unless FILE holds exactly one line */
#define PRELUDE                                                                                 \
    "ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\" "        \
    "2>/dev/null; }\n"                                                                          \
    "leaf() {\n"                                                                                \
    "  ec $T/$1.key\n"                                                                          \
    "  openssl req -new -key $T/$1.key -subj /CN=localhost -out $T/$1.csr 2>/dev/null\n"       \
    "  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=critical,CA:FALSE"  \
    "\\nextendedKeyUsage=serverAuth,clientAuth\\n' > $T/$1.ext\n"                                 \
    "  openssl x509 -req -in $T/$1.csr -CA $T/ca.pem -CAkey $T/ca.key -set_serial $2 -days 2 " \
    "-extfile $T/$1.ext -out $T/$1.pem 2>/dev/null || fail \"certificate $1\"\n"                \
    "}\n"                                                                                       \
    "mkcerts() {\n"                                                                             \
    "  ec $T/ca.key || fail 'CA key'\n"                                                         \
    "  openssl req -x509 -new -key $T/ca.key -subj /CN=tether-test-ca -days 2 -out $T/ca.pem " \
    "2>/dev/null || fail 'CA certificate'\n"                                                    \
    "  leaf srv 0x1001; leaf srv2 0x2002\n"                                                     \
    "}\n"                                                                                       \
    "start_echo() {\n"                                                                          \
    "  timeout --foreground 40 $TETHER echo -v --listen 127.0.0.1:0 \"$@\" > $T/echo.out "      \
    "2> $T/echo.err &\n"                                                                        \
    "  ECHO=$!\n"                                                                               \
    "  for i in $(seq 400); do grep -q listening $T/echo.out 2>/dev/null && break; "            \
    "sleep 0.05; done\n"                                                                        \
    "  PORT=$(sed -n 's/.*127.0.0.1:\\([0-9]*\\).*/\\1/p' $T/echo.out)\n"                        \
    "  [ -n \"$PORT\" ] || fail \"echo did not listen: $(cat $T/echo.out $T/echo.err)\"\n"     \
    "}\n"                                                                                       \
    "serial() {\n"                                                                              \
    "  timeout 10 openssl s_client -connect 127.0.0.1:$PORT -servername localhost "            \
    "-CAfile $T/ca.pem -verify_return_error < /dev/null 2> /dev/null | "                        \
    "openssl x509 -noout -serial 2> /dev/null\n"                                                \
    "}\n"                                                                                       \
    "one_line() { [ \"$(wc -l < $1)\" = 1 ] || fail \"not one line: $(cat $1)\"; }\n"           \
    "mkcerts\n"

/* Run `script` with bash, $T the test's directory and $TETHER the tool; it exits 0
 * when every check holds, else prints what failed. */
static void run_script(const char *script)
{
    char path[128], cmd[512], log[16384];
    snprintf(path, sizeof(path), "%s/script.sh", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "T='%s'\nTETHER='%s'\nfail() { echo \"FAIL: $*\"; exit 1; }\n%s\n%s\n", dir,
            TETHER, PRELUDE, script);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "timeout 80 bash %s > %s/log 2>&1", path, dir);
    int st = system(cmd);
    snprintf(path, sizeof(path), "%s/log", dir);
    f = fopen(path, "r");
    size_t n = f != NULL ? fread(log, 1, sizeof(log) - 1, f) : 0;
    log[n] = '\0';
    if (f != NULL)
        fclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "script failed (status %d):\n%s", st, log);
}

Test(tlscli, echo_and_cat_round_trip_and_end_with_close_notify_both_ways)
{
    run_script("start_echo --tls-cert $T/srv.pem --tls-key $T/srv.key\n"
               "grep -q 'listening on 127.0.0.1:[0-9]* (tls)$' $T/echo.out || "
               "fail \"listening line: $(cat $T/echo.out)\"\n"
               "got=$(printf 'hello, tls\\nsecond line\\n' | timeout 10 $TETHER cat --tls "
               "--tls-ca $T/ca.pem localhost:$PORT 2> $T/cat.err); rc=$?\n"
               "[ $rc = 0 ] || fail \"cat exit $rc: $(cat $T/cat.err)\"\n"
               "[ \"$got\" = \"$(printf 'hello, tls\\nsecond line')\" ] || fail \"got '$got'\"\n"
               "[ -s $T/cat.err ] && fail \"cat said: $(cat $T/cat.err)\"\n"
               /* A megabyte through sendfile-less stdin and back, checksummed. */
               "head -c 1048576 /dev/urandom > $T/mb\n"
               "want=$(sha256sum < $T/mb)\n"
               "got=$(timeout 20 $TETHER cat --tls --tls-ca $T/ca.pem 127.0.0.1:$PORT < $T/mb | "
               "sha256sum)\n"
               "[ \"$got\" = \"$want\" ] || fail 'the megabyte came back different'\n"
               /* A second, foreign client: openssl s_client. */
               "got=$( (printf 'from s_client\\n'; sleep 1) | timeout 10 openssl s_client -quiet "
               "-connect 127.0.0.1:$PORT -servername localhost -CAfile $T/ca.pem "
               "-verify_return_error 2> $T/sc.err)\n"
               "[ \"$got\" = 'from s_client' ] || fail \"s_client got '$got': $(cat $T/sc.err)\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               /* Both cat connections ended cleanly on the server's side too: their
                * close_notify came (a FIN alone would be 'tls truncated'). */
               "grep -q 'open from 127.0.0.1:[0-9]* (TLSv1.3 TLS_' $T/echo.err || "
               "fail \"open line: $(cat $T/echo.err)\"\n"
               "[ $(grep -Ec 'closed: peer closed, (23|1048576) bytes in' $T/echo.err) = 2 ] || "
               "fail \"close lines: $(cat $T/echo.err)\"\n"
               "exit 0\n");
}

/* cat's exit 0 means the peer's close_notify came: a Python server that ends with
 * unwrap() (close_notify) gives 0, one that only closes its socket gives 1 and
 * 'tls truncated'. */
Test(tlscli, cat_exits_0_after_close_notify_and_1_on_truncation)
{
    run_script("cat > $T/srv.py <<'EOF'\n"
               "import socket, ssl, sys\n"
               "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
               "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
               "ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(1)\n"
               "print(ls.getsockname()[1], flush=True)\n"
               "c, _ = ls.accept(); s = ctx.wrap_socket(c, server_side=True)\n"
               "got = b''\n"
               "while True:\n"
               "    b = s.recv(65536)\n"
               "    if not b: break\n"
               "    got += b\n"
               "s.sendall(b'got %d bytes\\n' % len(got))\n"
               "if sys.argv[3] == 'clean':\n"
               "    s.unwrap().close()\n"
               "else:\n"
               "    s.shutdown(socket.SHUT_RDWR); s.close()  # no SSL_shutdown: no close_notify\n"
               "EOF\n"
               "for mode in clean cut; do\n"
               "  rm -f $T/py.out\n"
               "  timeout 20 python3 $T/srv.py $T/srv.pem $T/srv.key $mode > $T/py.out "
               "2> $T/py.err &\n"
               "  PY=$!\n"
               "  for i in $(seq 100); do [ -s $T/py.out ] && break; sleep 0.05; done\n"
               "  P=$(cat $T/py.out)\n"
               "  got=$(printf 'twelve bytes' | timeout 10 $TETHER cat -v --tls --tls-ca $T/ca.pem "
               "localhost:$P 2> $T/cat.err); rc=$?\n"
               "  wait $PY\n"
               "  [ \"$got\" = 'got 12 bytes' ] || "
               "fail \"$mode: got '$got': $(cat $T/cat.err $T/py.err)\"\n"
               "  if [ $mode = clean ]; then\n"
               "    [ $rc = 0 ] || fail \"clean: exit $rc: $(cat $T/cat.err)\"\n"
               "    grep -q 'closed (local end)' $T/cat.err || fail \"clean: $(cat $T/cat.err)\"\n"
               "  else\n"
               "    [ $rc = 1 ] || fail \"cut: exit $rc: $(cat $T/cat.err)\"\n"
               "    grep -q \"^tether cat: localhost:$P: tls truncated\" $T/cat.err || "
               "fail \"cut: $(cat $T/cat.err)\"\n"
               "    grep -q 'closed (tls truncated' $T/cat.err || "
               "fail \"cut -v: $(cat $T/cat.err)\"\n"
               "  fi\n"
               "done\n"
               "exit 0\n");
}

/* A certificate that does not verify: exit 1 and one line naming the host and the
 * reason, for cat, send and bench alike; --tls-insecure then gets through. */
Test(tlscli, verification_failures_exit_1_with_one_line_naming_host_and_reason)
{
    run_script("start_echo --tls-cert $T/srv.pem --tls-key $T/srv.key\n"
               "check() { # NAME RC-FILE ERR-FILE PATTERN\n"
               "  [ \"$(cat $2)\" = 1 ] || fail \"$1: exit $(cat $2): $(cat $3)\"\n"
               "  one_line $3\n"
               "  grep -Eq \"$4\" $3 || fail \"$1: $(cat $3)\"\n"
               "}\n"
               /* Wrong name: the certificate is for localhost and 127.0.0.1. */
               "echo x | timeout 10 $TETHER cat --tls --tls-ca $T/ca.pem --tls-servername "
               "wrong.example 127.0.0.1:$PORT > /dev/null 2> $T/e1; echo $? > $T/rc1\n"
               "check name $T/rc1 $T/e1 \"^tether cat: 127.0.0.1:$PORT \\(as wrong.example\\): tls "
               "handshake failed: .*(host ?name|mismatch)\"\n"
               /* Unknown CA: the system's store does not know ours. */
               "echo x | timeout 10 $TETHER cat --tls localhost:$PORT > /dev/null 2> $T/e2; "
               "echo $? > $T/rc2\n"
               "check ca $T/rc2 $T/e2 \"^tether cat: localhost:$PORT: tls handshake failed: .*"
               "([Uu]nknown CA|issuer|self.signed|unable to get)\"\n"
               "timeout 10 $TETHER send --tls localhost:$PORT /etc/hostname > /dev/null 2> $T/e3; "
               "echo $? > $T/rc3\n"
               "check send $T/rc3 $T/e3 \"^tether send: connect localhost:$PORT: tls handshake "
               "failed: .\"\n"
               "timeout 20 $TETHER bench --tls -d 1 localhost:$PORT > /dev/null 2> $T/e4; "
               "echo $? > $T/rc4\n"
               "check bench $T/rc4 $T/e4 \"^tether bench: connect localhost:$PORT: tls handshake "
               "failed: .\"\n"
               /* The same server, trusted or not checked at all, answers. */
               "got=$(echo ok | timeout 10 $TETHER cat --tls --tls-insecure localhost:$PORT)\n"
               "[ \"$got\" = ok ] || fail \"insecure got '$got'\"\n"
               "timeout 20 $TETHER bench --tls --tls-ca $T/ca.pem -c 2 -d 0.5 localhost:$PORT "
               "> $T/bench.out 2>&1 || fail \"bench: $(cat $T/bench.out)\"\n"
               "grep -q 'TLS$' $T/bench.out || fail \"bench header: $(cat $T/bench.out)\"\n"
               "grep -q 'opened      2, connect errors 0, errors 0' $T/bench.out || "
               "fail \"bench: $(cat $T/bench.out)\"\n"
               "head -c 200000 /dev/urandom > $T/f\n"
               "timeout 10 $TETHER send --tls --tls-ca $T/ca.pem localhost:$PORT $T/f "
               "> $T/send.out "
               "2>&1 || fail \"send: $(cat $T/send.out)\"\n"
               "grep -q \"^200000 bytes sent to localhost:$PORT\" $T/send.out || "
               "fail \"send: $(cat $T/send.out)\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               "exit 0\n");
}

/* Bytes that are no ClientHello close that connection only, and the verbose close
 * line says 'tls handshake failed' with the reason. */
Test(tlscli, garbage_client_gets_a_handshake_failed_close_line_with_reason)
{
    run_script("start_echo --tls-cert $T/srv.pem --tls-key $T/srv.key\n"
               "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | timeout 10 socat -t 3 - "
               "TCP:127.0.0.1:$PORT > $T/garbage.out\n"
               "for i in $(seq 100); do grep -q 'closed:' $T/echo.err && break; sleep 0.05; done\n"
               /* The reason is the layer's own words, not the errno's text. */
               "grep -Eq '#[0-9]+ closed: tls handshake failed: http request, 0 bytes in' "
               "$T/echo.err || "
               "fail \"close line: $(cat $T/echo.err)\"\n"
               "grep -q 'open from' $T/echo.err && fail 'on_open for a failed handshake'\n"
               "got=$(echo still | timeout 10 $TETHER cat --tls --tls-ca $T/ca.pem "
               "localhost:$PORT)\n"
               "[ \"$got\" = still ] || fail \"after the garbage: '$got'\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               "exit 0\n");
}

/* SIGHUP reads the files again: a new s_client sees the new serial; a bad pair is
 * refused with one line, the previous certificate stays, and the exit is still 0. */
#define RELOAD_SCRIPT                                                                           \
    "cp $T/srv.pem $T/cur.pem; cp $T/srv.key $T/cur.key\n"                                      \
    "[ \"$(serial)\" = serial=1001 ] || fail \"first serial: $(serial)\"\n"                     \
    "cp $T/srv2.pem $T/cur.pem; cp $T/srv2.key $T/cur.key\n"                                    \
    "kill -HUP $SRV\n"                                                                          \
    "for i in $(seq 100); do grep -q 'tls reload' $ERR && break; sleep 0.05; done\n"            \
    "grep -q \"tls reload: new connections get the certificate in $T/cur.pem\" $ERR || "        \
    "fail \"reload line: $(cat $ERR)\"\n"                                                       \
    "for i in 1 2 3 4 5 6; do\n"                                                               \
    "  [ \"$(serial)\" = serial=2002 ] || fail \"after reload: $(serial)\"\n"                     \
    "done\n"                                                                                    \
    "cp $T/srv.key $T/cur.key\n" /* a key that is not the certificate's */                      \
    "kill -HUP $SRV\n"                                                                          \
    "for i in $(seq 100); do grep -q 'still using' $ERR && break; sleep 0.05; done\n"           \
    "grep 'tls reload' $ERR | tail -1 > $T/bad\n"                                               \
    "one_line $T/bad\n"                                                                         \
    "grep -q \"tls reload: certificate $T/cur.pem and key $T/cur.key: .*; still using the "     \
    "previous certificate\" $T/bad || fail \"bad reload line: $(cat $T/bad)\"\n"                \
    "echo garbage > $T/cur.pem\n"                                                               \
    "kill -HUP $SRV\n"                                                                          \
    "for i in $(seq 100); do [ $(grep -c 'still using' $ERR) = 2 ] && break; sleep 0.05; done\n"\
    "grep -q \"tls reload: certificate $T/cur.pem: no PEM certificate in it; still using\" "     \
    "$ERR || fail \"garbage reload line: $(cat $ERR)\"\n"                                       \
    "for i in 1 2 3 4; do [ \"$(serial)\" = serial=2002 ] || fail \"after bad reload: "         \
    "$(serial)\"; done\n"                                                                       \
    "kill -TERM $SRV; wait $SRV || fail \"server exit $? after a failed reload\"\n"

Test(tlscli, sighup_reloads_the_certificate_and_a_bad_reload_keeps_the_old_one)
{
    run_script("cp $T/srv.pem $T/cur.pem; cp $T/srv.key $T/cur.key\n"
               "start_echo --tls-cert $T/cur.pem --tls-key $T/cur.key\n"
               "SRV=$ECHO; ERR=$T/echo.err\n" RELOAD_SCRIPT "exit 0\n");
}

Test(tlscli, sighup_reloads_every_worker_and_chat_too)
{
    run_script("cp $T/srv.pem $T/cur.pem; cp $T/srv.key $T/cur.key\n"
               "start_echo --workers 2 --tls-cert $T/cur.pem --tls-key $T/cur.key\n"
               "grep -q '(2 workers) (tls)$' $T/echo.out || fail \"$(cat $T/echo.out)\"\n"
               "SRV=$ECHO; ERR=$T/echo.err\n" RELOAD_SCRIPT
               /* chat: the same reload on its one loop, and lines relayed over TLS. */
               "cp $T/srv.pem $T/cur.pem; cp $T/srv.key $T/cur.key\n"
               "timeout --foreground 40 $TETHER chat --listen 127.0.0.1:0 --tls-cert $T/cur.pem "
               "--tls-key $T/cur.key > $T/chat.out 2> $T/chat.err &\n"
               "CHAT=$!\n"
               "for i in $(seq 100); do grep -q listening $T/chat.out && break; sleep 0.05; done\n"
               "PORT=$(sed -n 's/.*127.0.0.1:\\([0-9]*\\) (tls)$/\\1/p' $T/chat.out)\n"
               "[ -n \"$PORT\" ] || fail \"chat: $(cat $T/chat.out $T/chat.err)\"\n"
               "(sleep 1.5) | timeout 10 $TETHER cat --tls --tls-ca $T/ca.pem localhost:$PORT "
               "> $T/heard &\n"
               "L=$!\n"
               "sleep 0.5\n"
               "(echo 'hello over tls'; sleep 0.5) | timeout 10 $TETHER cat --tls --tls-ca "
               "$T/ca.pem localhost:$PORT > /dev/null\n"
               "wait $L\n"
               "grep -q '\\] hello over tls$' $T/heard || fail \"chat heard: $(cat $T/heard)\"\n"
               "grep -q 'joined (TLSv1.3 ' $T/chat.err || fail \"chat log: $(cat $T/chat.err)\"\n"
               "SRV=$CHAT; ERR=$T/chat.err\n" RELOAD_SCRIPT "exit 0\n");
}

/* Mutual TLS and ALPN through the flags: a client without a certificate is
 * refused (exit 1, one line), one with a certificate our CA signed gets in, and
 * the protocol agreed shows on both sides' open lines. cat --listen --tls is a
 * server for one connection; a garbage client before it is reported and the
 * listener waits on. */
Test(tlscli, mutual_tls_alpn_and_cat_listen_as_a_tls_server)
{
    run_script("start_echo --tls-cert $T/srv.pem --tls-key $T/srv.key --tls-ca $T/ca.pem "
               "--tls-verify-client --tls-alpn h2,http/1.1\n"
               "echo x | timeout 10 $TETHER cat --tls --tls-ca $T/ca.pem localhost:$PORT "
               "> /dev/null 2> $T/e1; rc=$?\n"
               "[ $rc = 1 ] || fail \"no client certificate: exit $rc: $(cat $T/e1)\"\n"
               "one_line $T/e1\n"
               /* TLS 1.3: the client's handshake is over before the server judges its
                * (missing) certificate, so the client may write first and meet the
                * reset before it reads the server's alert: either is a refusal. */
               "grep -Eq \"^tether cat: localhost:$PORT: (tls|peer reset)\" $T/e1 || "
               "fail \"$(cat $T/e1)\"\n"
               "got=$(echo mtls | timeout 10 $TETHER cat -v --tls --tls-ca $T/ca.pem "
               "--tls-cert $T/srv2.pem --tls-key $T/srv2.key --tls-alpn http/1.1 "
               "localhost:$PORT 2> $T/e2)\n"
               "[ \"$got\" = mtls ] || fail \"with a certificate: '$got': $(cat $T/e2)\"\n"
               "grep -q 'connected to 127.0.0.1:[0-9]* (TLSv1.3 .*, alpn http/1.1)' $T/e2 || "
               "fail \"client open line: $(cat $T/e2)\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               "grep -q 'closed: tls handshake failed: peer did not return a certificate' "
               "$T/echo.err || fail \"refusal: $(cat $T/echo.err)\"\n"
               "grep -q 'open from .*, alpn http/1.1)' $T/echo.err || "
               "fail \"server open line: $(cat $T/echo.err)\"\n"
               /* cat --listen --tls: one TLS connection, garbage before it. */
               "timeout --foreground 20 $TETHER cat -v --listen 127.0.0.1:0 --tls "
               "--tls-cert $T/srv.pem --tls-key $T/srv.key < /dev/null > $T/l.out 2> $T/l.err &\n"
               "L=$!\n"
               "for i in $(seq 100); do grep -q listening $T/l.err && break; sleep 0.05; done\n"
               "P=$(sed -n 's/.*127.0.0.1:\\([0-9]*\\) (tls)$/\\1/p' $T/l.err)\n"
               "[ -n \"$P\" ] || fail \"cat --listen: $(cat $T/l.err)\"\n"
               "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10 socat -t 3 - TCP:127.0.0.1:$P "
               "> /dev/null\n"
               "for i in $(seq 100); do grep -q 'client #' $T/l.err && break; sleep 0.05; done\n"
               "echo to-listener | timeout 10 $TETHER cat --tls --tls-ca $T/ca.pem localhost:$P "
               "> /dev/null || fail 'client of cat --listen'\n"
               "wait $L || fail \"cat --listen exit $?: $(cat $T/l.err)\"\n"
               "[ \"$(cat $T/l.out)\" = to-listener ] || fail \"listener got '$(cat $T/l.out)'\"\n"
               "grep -q 'client #[0-9]*: tls handshake failed: http request (still listening)' "
               "$T/l.err || fail \"garbage line: $(cat $T/l.err)\"\n"
               "exit 0\n");
}

/* --ws with a certificate is wss://: Python's websockets client verifies it and
 * gets its message back. */
Test(tlscli, echo_ws_with_a_certificate_serves_wss)
{
    run_script("start_echo --ws --tls-cert $T/srv.pem --tls-key $T/srv.key\n"
               "grep -q '(websocket, tls)$' $T/echo.out || fail \"$(cat $T/echo.out)\"\n"
               "got=$(timeout 10 /usr/bin/python3 -c '\n"
               "import asyncio, ssl, sys, websockets\n"
               "async def main():\n"
               "    ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
               "    url = \"wss://localhost:%s/\" % sys.argv[2]\n"
               "    async with websockets.connect(url, ssl=ctx) as ws:\n"
               "        await ws.send(\"over wss\"); print(await ws.recv())\n"
               "asyncio.run(main())' $T/ca.pem $PORT 2> $T/py.err)\n"
               "[ \"$got\" = 'over wss' ] || fail \"got '$got': $(cat $T/py.err)\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               "grep -q 'closed: websocket closed (code 1000)' $T/echo.err || "
               "fail \"close line: $(cat $T/echo.err)\"\n"
               "exit 0\n");
}

/* chat --ws with a certificate: both listeners speak TLS, a wss:// client and a
 * line client over TLS share the room, and SIGHUP gives both the new certificate. */
Test(tlscli, chat_ws_listener_speaks_tls_too_and_reloads_with_the_other)
{
    run_script("cp $T/srv.pem $T/cur.pem; cp $T/srv.key $T/cur.key\n"
               "timeout --foreground 40 $TETHER chat --listen 127.0.0.1:0 --ws 127.0.0.1:0 "
               "--tls-cert $T/cur.pem --tls-key $T/cur.key > $T/chat.out 2> $T/chat.err &\n"
               "CHAT=$!\n"
               "for i in $(seq 100); do grep -q websocket $T/chat.out && break; sleep 0.05; done\n"
               "LP=$(sed -n 's/.*127.0.0.1:\\([0-9]*\\) (tls)$/\\1/p' $T/chat.out)\n"
               "WP=$(sed -n 's/.*127.0.0.1:\\([0-9]*\\) (websocket, tls)$/\\1/p' $T/chat.out)\n"
               "[ -n \"$LP\" ] && [ -n \"$WP\" ] || fail \"chat: $(cat $T/chat.out $T/chat.err)\"\n"
               "timeout 10 /usr/bin/python3 -c '\n"
               "import asyncio, ssl, sys, websockets\n"
               "async def main():\n"
               "    ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
               "    url = \"wss://localhost:%s/\" % sys.argv[2]\n"
               "    async with websockets.connect(url, ssl=ctx) as ws:\n"
               "        print(\"ready\", flush=True)\n"
               "        while True:\n"
               "            m = await ws.recv()\n"
               "            if \"from a line client\" in m: print(m, flush=True); return\n"
               "asyncio.run(main())' $T/ca.pem $WP > $T/ws.out 2> $T/ws.err &\n"
               "W=$!\n"
               "for i in $(seq 100); do grep -q ready $T/ws.out && break; sleep 0.05; done\n"
               "(echo 'from a line client'; sleep 0.5) | timeout 10 $TETHER cat --tls "
               "--tls-ca $T/ca.pem localhost:$LP > /dev/null\n"
               "wait $W || fail \"wss client: $(cat $T/ws.out $T/ws.err)\"\n"
               "grep -q '^\\[127.0.0.1:[0-9]*\\] from a line client$' $T/ws.out || "
               "fail \"wss heard: $(cat $T/ws.out)\"\n"
               "grep -q 'joined (websocket) (TLSv1.3 ' $T/chat.err || "
               "fail \"log: $(cat $T/chat.err)\"\n"
               "cp $T/srv2.pem $T/cur.pem; cp $T/srv2.key $T/cur.key\n"
               "kill -HUP $CHAT\n"
               "for i in $(seq 100); do grep -q 'tls reload' $T/chat.err && break; "
               "sleep 0.05; done\n"
               "for PORT in $LP $WP; do\n"
               "  [ \"$(serial)\" = serial=2002 ] || fail \"port $PORT after reload: $(serial)\"\n"
               "done\n"
               "kill -TERM $CHAT; wait $CHAT || fail \"chat exit $?\"\n"
               "exit 0\n");
}

Test(tlscli, stat_shows_tls_version_and_cipher_per_connection)
{
    run_script("start_echo --tls-cert $T/srv.pem --tls-key $T/srv.key --admin $T/adm.sock\n"
               "sleep 3 | timeout 10 $TETHER cat --tls --tls-ca $T/ca.pem localhost:$PORT "
               "> /dev/null &\n"
               "C=$!\n"
               "for i in $(seq 100); do grep -q 'open from' $T/echo.err && break; "
               "sleep 0.05; done\n"
               "timeout 10 $TETHER stat $T/adm.sock > $T/stat.out 2>&1 || "
               "fail \"stat: $(cat $T/stat.out)\"\n"
               "head -1 $T/stat.out | grep -Eq 'retrans +tls +cipher +pid' || "
               "fail \"header: $(head -1 $T/stat.out)\"\n"
               "grep -Eq '127.0.0.1:[0-9]+ +open .* TLSv1.3 +TLS_[A-Z0-9_]+ +- +- +-' "
               "$T/stat.out || "
               "fail \"row: $(cat $T/stat.out)\"\n"
               "wait $C || fail \"cat exit $?\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               /* A plain server's rows say '-' in both columns. */
               "start_echo --admin $T/adm2.sock\n"
               "sleep 2 | timeout 10 $TETHER cat 127.0.0.1:$PORT > /dev/null &\n"
               "C=$!\n"
               "for i in $(seq 100); do grep -q 'open from' $T/echo.err && break; "
               "sleep 0.05; done\n"
               "timeout 10 $TETHER stat $T/adm2.sock > $T/stat2.out 2>&1 || fail 'stat plain'\n"
               "grep -Eq '127.0.0.1:[0-9]+ +open .* - +- +- +- +-' $T/stat2.out || "
               "fail \"plain row: $(cat $T/stat2.out)\"\n"
               "wait $C; kill -TERM $ECHO; wait $ECHO\n"
               "exit 0\n");
}

Test(tlscli, bad_tls_options_are_usage_errors_and_missing_files_are_named)
{
    run_script("u() { # EXPECTED-RC PATTERN ARGS...\n"
               "  rc=$1 pat=$2; shift 2\n"
               "  timeout 5 $TETHER \"$@\" < /dev/null > /dev/null 2> $T/err; got=$?\n"
               "  [ $got = $rc ] || fail \"$*: exit $got: $(cat $T/err)\"\n"
               "  grep -q -- \"$pat\" $T/err || fail \"$*: $(cat $T/err)\"\n"
               "}\n"
               "u 2 '--tls-key needs --tls-cert' echo --tls-key $T/srv.key\n"
               "u 2 '--tls-verify-client needs --tls-ca' echo --tls-cert $T/srv.pem "
               "--tls-key $T/srv.key --tls-verify-client\n"
               "u 2 '--tls-ca needs --tls-cert' chat --tls-ca $T/ca.pem\n"
               "u 2 '--tls-ca needs --tls' cat --tls-ca $T/ca.pem 127.0.0.1:1\n"
               "u 2 'unknown option .--tls-insecure' echo --tls-insecure\n"
               "u 2 '--tls-insecure is for connecting' cat --listen 127.0.0.1:0 --tls "
               "--tls-cert $T/srv.pem --tls-key $T/srv.key --tls-insecure\n"
               "u 2 '--tls needs --tls-cert' cat --listen 127.0.0.1:0 --tls\n"
               "u 2 'bad --tls-alpn' cat --tls --tls-alpn 'h2,,x' 127.0.0.1:1\n"
               "u 1 \"certificate $T/none.pem: No such file\" echo --tls-cert $T/none.pem "
               "--tls-key $T/srv.key\n"
               "u 1 \"key $T/srv.pem: no PEM private key\" echo --tls-cert $T/srv.pem "
               "--tls-key $T/srv.pem\n"
               "u 1 \"certificate $T/srv.pem and key $T/srv2.key\" echo --tls-cert $T/srv.pem "
               "--tls-key $T/srv2.key\n"
               "u 1 \"CA file $T/none: No such file\" cat --tls --tls-ca $T/none 127.0.0.1:1\n"
               "exit 0\n");
}

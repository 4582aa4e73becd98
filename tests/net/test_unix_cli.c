/* The tether tool on Unix domain addresses, as a user runs it: every command that
 * takes an address takes unix:/path and unix:@name, with real peers (python3,
 * socat, node) on the other end. Each scenario is a short shell script; every
 * process in it is bounded by timeout(1), and the script says what went wrong.
 * Servers run under `timeout --foreground`: without it timeout(1) passes our
 * SIGTERM on twice (to the child and to its process group), and a second signal
 * during chat's graceful shutdown stops it early. */
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
    strcpy(dir, "/tmp/tt-ucli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

TestSuite(unixcli, .init = setup, .fini = teardown, .timeout = 90);

/* Run `script` with bash, $T the test's directory and $TETHER the tool; it exits 0
 * when every check holds, else prints what failed. */
static void run_script(const char *script)
{
    char path[128], cmd[512], log[8192];
    snprintf(path, sizeof(path), "%s/script.sh", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "T='%s'\nTETHER='%s'\nfail() { echo \"FAIL: $*\"; exit 1; }\n%s\n", dir, TETHER,
            script);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "timeout 60 bash %s > %s/log 2>&1", path, dir);
    int st = system(cmd);
    snprintf(path, sizeof(path), "%s/log", dir);
    f = fopen(path, "r");
    size_t n = f != NULL ? fread(log, 1, sizeof(log) - 1, f) : 0;
    log[n] = '\0';
    if (f != NULL)
        fclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "script failed (status %d):\n%s", st, log);
}

/* Start `tether echo` in the background on $1 and wait for its listening line. */
#define START_ECHO                                                                      \
    "start_echo() {\n"                                                                  \
    "  timeout --foreground 30 $TETHER echo --listen \"$1\" -v > $T/echo.out 2> $T/echo.err &\n"     \
    "  ECHO=$!\n"                                                                       \
    "  for i in $(seq 100); do grep -q listening $T/echo.out 2>/dev/null && return 0; " \
    "sleep 0.05; done\n"                                                                \
    "  fail \"echo did not listen: $(cat $T/echo.err)\"\n"                              \
    "}\n"

Test(unixcli, echo_on_a_path_answers_python_and_socat_and_removes_its_file)
{
    run_script(START_ECHO
               "start_echo unix:$T/e.sock\n"
               "grep -qx \"tether echo: listening on unix:$T/e.sock\" $T/echo.out || "
               "fail \"listening line: $(cat $T/echo.out)\"\n"
               "[ -S $T/e.sock ] || fail 'no socket file'\n"
               "got=$(timeout 10 python3 -c 'import socket,sys\n"
               "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b\"py\")\n"
               "s.shutdown(socket.SHUT_WR); print(s.recv(10).decode())' $T/e.sock)\n"
               "[ \"$got\" = py ] || fail \"python got '$got'\"\n"
               "got=$(printf socat | timeout 10 socat -t 5 - UNIX-CONNECT:$T/e.sock)\n"
               "[ \"$got\" = socat ] || fail \"socat got '$got'\"\n"
               "kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               "grep -q 'open from unix: (pid [0-9]*, uid 0, gid 0)' $T/echo.err || "
               "fail \"open line: $(cat $T/echo.err)\"\n"
               "grep -q 'closed: peer closed, 2 bytes in, 2 out (pid [0-9]*, uid 0, gid 0)' "
               "$T/echo.err || fail \"close line: $(cat $T/echo.err)\"\n"
               "[ -e $T/e.sock ] && fail 'socket file left after exit'\n"
               "exit 0\n");
}

Test(unixcli, stat_shows_the_unix_peer_and_its_credentials)
{
    run_script("timeout --foreground 30 $TETHER echo --listen unix:$T/e.sock --admin $T/adm.sock "
               "> $T/echo.out 2> $T/echo.err &\n"
               "ECHO=$!\n"
               "for i in $(seq 100); do grep -q listening $T/echo.out && break; sleep 0.05; done\n"
               "timeout 20 python3 -c 'import socket,sys,time,os\n"
               "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(os.getpid(), flush=True)\n"
               "time.sleep(5)' $T/e.sock > $T/py.out &\n"
               "P=$!\n"
               "for i in $(seq 100); do [ -s $T/py.out ] && break; sleep 0.05; done\n"
               "pid=$(cat $T/py.out)\n"
               "sleep 0.2\n"
               "timeout 10 $TETHER stat $T/adm.sock > $T/stat.out 2>&1 || fail \"stat: $(cat $T/stat.out)\"\n"
               "head -1 $T/stat.out | grep -q 'pid *uid *gid *$' || fail \"header: $(head -1 $T/stat.out)\"\n"
               "grep -Eq \"unix:$T/e.sock +unix: +open .* $pid +0 +0 *$\" $T/stat.out || "
               "fail \"row: $(cat $T/stat.out) (pid $pid)\"\n"
               "kill $P; kill -TERM $ECHO; wait $ECHO || fail \"echo exit $?\"\n"
               "[ -e $T/adm.sock ] && fail 'admin socket left'\n"
               "[ -e $T/e.sock ] && fail 'socket left'\n"
               "exit 0\n");
}

Test(unixcli, cat_and_send_to_an_abstract_name_and_a_path)
{
    run_script("name=tt-ucli-$$\n"
               "timeout 20 socat ABSTRACT-LISTEN:$name,fork SYSTEM:cat &\n"
               "S=$!\n"
               "for i in $(seq 100); do grep -q \"@$name\" /proc/net/unix && break; "
               "sleep 0.05; done\n"
               "got=$(printf abstract | timeout 10 $TETHER cat unix:@$name)\n"
               "[ \"$got\" = abstract ] || fail \"cat got '$got'\"\n"
               "kill $S\n"
               "head -c 300000 /dev/urandom > $T/in\n"
               "timeout 20 socat -u UNIX-LISTEN:$T/s.sock OPEN:$T/recv,creat &\n"
               "S=$!\n"
               "for i in $(seq 100); do [ -S $T/s.sock ] && break; sleep 0.05; done\n"
               "timeout 10 $TETHER send unix:$T/s.sock $T/in > $T/send.out 2>&1 || "
               "fail \"send: $(cat $T/send.out)\"\n"
               "wait $S\n"
               "cmp -s $T/in $T/recv || fail 'send: bytes differ'\n"
               "grep -q \"300000 bytes sent to unix:$T/s.sock\" $T/send.out || "
               "fail \"send line: $(cat $T/send.out)\"\n"
               "exit 0\n");
}

Test(unixcli, chat_and_bench_on_unix_addresses)
{
    run_script(START_ECHO
               "timeout --foreground 30 $TETHER chat --listen unix:$T/chat.sock > $T/chat.out 2> $T/chat.err &\n"
               "C=$!\n"
               "for i in $(seq 100); do grep -q listening $T/chat.out && break; sleep 0.05; done\n"
               "grep -q \"listening on unix:$T/chat.sock\" $T/chat.out || "
               "fail \"chat: $(cat $T/chat.out $T/chat.err)\"\n"
               "got=$(timeout 10 node -e '\n"
               "const net=require(\"net\"), p=process.argv[1];\n"
               "const a=net.createConnection(p); let got=\"\";\n"
               "a.on(\"data\",d=>{got+=d; if(got.includes(\"joined\")){console.log(got.trim());"
               "process.exit(0);}});\n"
               "a.on(\"connect\",()=>setTimeout(()=>net.createConnection(p),200));' "
               "$T/chat.sock)\n"
               "echo \"$got\" | grep -q '^\\* unix:pid[0-9]* joined$' || fail \"node got '$got'\"\n"
               "kill -TERM $C; wait $C || fail \"chat exit $?: $(cat $T/chat.err)\"\n"
               "start_echo unix:@tt-ucli-bench-$$\n"
               "timeout 30 $TETHER bench -c 2 -d 1 unix:@tt-ucli-bench-$$ > $T/bench.out 2>&1 || "
               "fail \"bench: $(cat $T/bench.out)\"\n"
               "grep -q 'opened      2, connect errors 0, errors 0' $T/bench.out || "
               "fail \"bench: $(cat $T/bench.out)\"\n"
               "kill -TERM $ECHO; wait $ECHO\n"
               "exit 0\n");
}

Test(unixcli, paths_that_cannot_be_used_exit_1_naming_the_path_and_stay)
{
    run_script(START_ECHO
               "check() {\n"
               "  timeout 10 $TETHER echo --listen unix:$1 > /dev/null 2> $T/err\n"
               "  rc=$?; [ $rc = 1 ] || fail \"$1: exit $rc\"\n"
               "  grep -q \"listen unix:$1: $2\" $T/err || fail \"$1: $(cat $T/err)\"\n"
               "}\n"
               "echo data > $T/file; check $T/file 'File exists (the path is not a socket'\n"
               "[ \"$(cat $T/file)\" = data ] || fail 'the regular file changed'\n"
               "mkdir $T/dir; check $T/dir 'File exists'; [ -d $T/dir ] || fail 'dir gone'\n"
               "ln -s $T/file $T/link; check $T/link 'File exists'\n"
               "[ -L $T/link ] || fail 'symlink gone'\n"
               "start_echo unix:$T/live.sock\n"
               "check $T/live.sock 'Address already in use (a server is answering'\n"
               "[ -S $T/live.sock ] || fail 'the live socket was removed'\n"
               "kill -TERM $ECHO; wait $ECHO\n"
               /* A stale file (its server was killed) is replaced. */
               "python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "
               "$T/stale.sock\n"
               "[ -S $T/stale.sock ] || fail 'no stale file made'\n"
               "start_echo unix:$T/stale.sock\n"
               "got=$(printf x | timeout 10 $TETHER cat unix:$T/stale.sock)\n"
               "[ \"$got\" = x ] || fail \"stale: got '$got'\"\n"
               "kill -TERM $ECHO; wait $ECHO\n"
               /* Bad text: usage error, exit 2. */
               "timeout 5 $TETHER cat unix: 2> $T/err; rc=$?\n"
               "[ $rc = 2 ] || fail \"unix: exit $rc\"\n"
               "grep -q 'expected unix:/path or unix:@name' $T/err || fail \"$(cat $T/err)\"\n"
               "timeout 5 $TETHER echo --listen unix:/$(printf %0120d 0) 2> $T/err; rc=$?\n"
               "[ $rc = 2 ] || fail \"long path exit $rc\"\n"
               "grep -q 'at most 107 bytes' $T/err || fail \"$(cat $T/err)\"\n"
               "timeout 5 $TETHER udp-echo --listen unix:$T/u.sock 2> $T/err; rc=$?\n"
               "[ $rc = 2 ] || fail \"udp-echo on unix: exit $rc\"\n"
               "grep -q 'UDP takes an IP address' $T/err || fail \"$(cat $T/err)\"\n"
               "timeout 5 $TETHER cat unix:$T/nothing.sock 2> $T/err; rc=$?\n"
               "[ $rc = 1 ] || fail \"connect to nothing: exit $rc\"\n"
               "grep -q \"unix:$T/nothing.sock\" $T/err || fail \"$(cat $T/err)\"\n"
               "exit 0\n");
}

/* `tether chat`'s slow-reader policy: a client that stops reading is dropped with
 * "send queue overflow" once the lines waiting for it pass --max-queue, while the
 * flooder and a client that reads carry on, and the server's memory stays bounded. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The server's peak RSS, in KiB, stays under this: 48 MiB, far below the ~28 MB
 * relayed to each recipient twice over; AddressSanitizer's shadow and quarantine
 * add their own (the tool is built with the same flags as this test). */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MAX_KIB "262144"
#else
#define RSS_MAX_KIB "49152"
#endif

/* The scenario in python3, bounded by socket timeouts and a kill in `finally`:
 * exit 0 when every check holds, else a message on stderr. */
static const char *slow_py =
    "import socket,subprocess,sys,time,threading,signal\n"
    "tether=sys.argv[1]; rss_max=int(sys.argv[2])\n"
    "def fail(m): sys.stderr.write(m+'\\n'); sys.exit(1)\n"
    "p=subprocess.Popen([tether,'chat','--listen','127.0.0.1:0']+sys.argv[3:],\n"
    "    stdout=subprocess.PIPE,stderr=subprocess.PIPE)\n"
    "try:\n"
    "    port=int(p.stdout.readline().decode().rsplit(':',1)[1])\n"
    "    slow=socket.socket(); slow.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)\n"
    "    slow.connect(('127.0.0.1',port))\n"
    "    good=socket.create_connection(('127.0.0.1',port),timeout=10)\n"
    "    f=socket.create_connection(('127.0.0.1',port),timeout=10)\n"
    "    got=[0,b'']  # lines, last bytes\n"
    "    def read_all(s,acc):\n"
    "        try:\n"
    "            while True:\n"
    "                c=s.recv(1<<20)\n"
    "                if not c: return\n"
    "                acc[0]+=c.count(b'\\n'); acc[1]=(acc[1]+c)[-64:]\n"
    "                if b'the end' in acc[1]: return\n"
    "        except OSError: return\n"
    "    junk=[0,b'']\n"
    "    tg=threading.Thread(target=read_all,args=(good,got)); tg.start()\n"
    "    tf=threading.Thread(target=read_all,args=(f,junk),daemon=True); tf.start()\n"
    "    time.sleep(0.2)\n"
    "    # 200000 lines, ~28 MB relayed per recipient (more than the kernel's buffers\n"
    "    # can absorb), in bursts a reader keeps up with\n"
    "    for i in range(200):\n"
    "        f.sendall((b'x'*100+b'\\n')*1000); time.sleep(0.005)\n"
    "    f.sendall(b'the end\\n')\n"
    "    tg.join(20)\n"
    "    if tg.is_alive(): fail('the reading client did not get every line')\n"
    "    n=got[0]\n"
    "    if n<200001: fail('reading client got %d lines; stderr %r'%(n,p.stderr.read1(4096)))\n"
    "    rss=0\n"
    "    for l in open('/proc/%d/status'%p.pid):\n"
    "        if l.startswith('VmHWM:'): rss=int(l.split()[1])\n"
    "    if rss>rss_max: fail('server peak RSS %d KiB'%rss)\n"
    "    p.send_signal(signal.SIGTERM)\n"
    "    out,err=p.communicate(timeout=10)\n"
    "    if p.returncode!=0: fail('chat exit %d: %r'%(p.returncode,err))\n"
    "    if err.count(b'(send queue overflow)')!=1: fail('stderr %r'%err[-2000:])\n"
    "finally:\n"
    "    if p.poll() is None: p.kill()\n";

static int run_py(const char *arg)
{
    const char *bin = th_build_path("tether");
    if (access(bin, X_OK) != 0)
        cr_skip_test("no %s (the tool was not built)", bin);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* arg NULL (the default test) simply ends the list early */
        execlp("python3", "python3", "-c", slow_py, bin, RSS_MAX_KIB, arg, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    uint64_t end = th_now_ms() + 60000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(20000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(chat_slow_reader, a_client_that_stops_reading_is_dropped_at_max_queue, .timeout = 90)
{
    int rc = run_py("--max-queue=2M");
    cr_assert_eq(rc, 0, "scenario exit %d (stderr above)", rc);
}

Test(chat_slow_reader, the_default_policy_drops_a_client_that_stops_reading, .timeout = 90)
{
    int rc = run_py(NULL); /* 4 MiB by default: the flood is more */
    cr_assert_eq(rc, 0, "scenario exit %d (stderr above)", rc);
}

/* floor_uring.c - the io_uring "kernel floor": floor.c's work (count each
 * "\r\n\r\n", answer every request of one read with one send of fixed replies)
 * done through an io_uring instead of epoll, so bench/run.py can show what the
 * ring itself saves the kernel (issue 14).
 *
 * Usage: floor_uring PORT [BYTES]   (as floor.c: 127.0.0.1:PORT, BYTES of body)
 *
 * One thread, one ring (IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN), multishot
 * accept, multishot recv into a provided-buffer ring, one io_uring_enter per
 * loop turn (submit what the turn queued and wait for the next completion).
 * A connection has at most one send in flight; replies owed meanwhile are
 * sent when it completes (a short send sends the rest).
 * Build: gcc -O2 -o floor_uring floor_uring.c -luring
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* The same header set as floor.c (and vw's for a static file). */
static const char HEAD[] = "HTTP/1.1 200 OK\r\nServer: fl\r\n"
                           "Date: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
                           "Content-Type: application/octet-stream\r\n"
                           "Last-Modified: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
                           "Accept-Ranges: bytes\r\n"
                           "ETag: \"18eba5c1dd0c42a9-1\"\r\n"
                           "Content-Length: %zu\r\n\r\n";
static size_t RLEN, COPIES;
static char *replies;
#define MAXFD 65536
#define NBUF 512          /* provided buffers (a power of two) */
#define BUFSZ 16384
#define GROUP 0
enum { ACCEPT = 1, RECV = 2, SEND = 3 };
#define DATA(kind, fd) (((unsigned long long)(kind) << 32) | (unsigned)(fd))

static struct io_uring ring;
static struct io_uring_buf_ring *bufs;
static char *bufmem;
static unsigned char matched[MAXFD];
static size_t owed[MAXFD];   /* reply bytes not yet sent */
static size_t flight[MAXFD]; /* bytes of the send in flight (0: none) */
static int lfd;

static void die(const char *what, int err) { fprintf(stderr, "%s: %s\n", what, strerror(err)); exit(1); }

static struct io_uring_sqe *sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) { /* the SQ is full: hand it to the kernel, then there is room */
        io_uring_submit(&ring);
        s = io_uring_get_sqe(&ring);
    }
    return s;
}

static void arm_accept(void) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, DATA(ACCEPT, lfd));
}

static void arm_recv(int fd) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = GROUP;
    io_uring_sqe_set_data64(s, DATA(RECV, fd));
}

static void send_owed(int fd) {
    size_t off = (RLEN - owed[fd] % RLEN) % RLEN; /* owed is a suffix of the replies */
    size_t n = RLEN * COPIES - off;
    if (n > owed[fd]) n = owed[fd];
    struct io_uring_sqe *s = sqe();
    io_uring_prep_send(s, fd, replies + off, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, DATA(SEND, fd));
    flight[fd] = n;
}

static void drop(int fd) {
    /* the multishot recv ends by itself on EOF or error; close(2) then frees the socket */
    close(fd);
    matched[fd] = 0;
    owed[fd] = 0;
    flight[fd] = 0;
}

static void give_back(unsigned id) {
    io_uring_buf_ring_add(bufs, bufmem + (size_t)id * BUFSZ, BUFSZ, id, io_uring_buf_ring_mask(NBUF), 0);
    io_uring_buf_ring_advance(bufs, 1);
}

static void on_recv(int fd, struct io_uring_cqe *c) {
    int more = c->flags & IORING_CQE_F_MORE;
    if (c->res == -ENOBUFS) { arm_recv(fd); return; } /* buffers ran out: rearm */
    if (c->res <= 0) { if (!more) drop(fd); return; }
    unsigned id = c->flags >> IORING_CQE_BUFFER_SHIFT;
    const char *in = bufmem + (size_t)id * BUFSZ;
    size_t requests = 0;
    unsigned m = matched[fd];
    for (int i = 0; i < c->res; i++) {
        char ch = in[i];
        if (ch == "\r\n\r\n"[m]) {
            if (++m == 4) { requests++; m = 0; }
        } else {
            m = ch == '\r';
        }
    }
    matched[fd] = (unsigned char)m;
    give_back(id);
    if (!more) arm_recv(fd);
    if (!requests) return;
    owed[fd] += requests * RLEN;
    if (!flight[fd]) send_owed(fd);
}

static void on_send(int fd, int res) {
    if (!flight[fd]) return; /* the connection was dropped meanwhile */
    if (res < 0) { flight[fd] = 0; return; } /* the recv sees the end and drops it */
    owed[fd] -= (size_t)res;
    flight[fd] = 0;
    if (owed[fd]) send_owed(fd);
}

int main(int argc, char **argv) {
    long body = argc == 3 ? atol(argv[2]) : 1;
    if (argc < 2 || argc > 3 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535 || body < 0 || body > (1L << 30)) {
        fprintf(stderr, "usage: %s PORT [BODY_BYTES]\n", argv[0]);
        return 2;
    }
    char head[512];
    size_t hlen = (size_t)snprintf(head, sizeof head, HEAD, (size_t)body);
    RLEN = hlen + (size_t)body;
    COPIES = RLEN >= (1u << 20) ? 1 : (1u << 20) / RLEN;
    replies = malloc(RLEN * COPIES);
    if (!replies) die("malloc", ENOMEM);
    for (size_t i = 0; i < COPIES; i++) {
        memcpy(replies + i * RLEN, head, hlen);
        memset(replies + i * RLEN + hlen, 'x', (size_t)body);
    }
    signal(SIGPIPE, SIG_IGN);

    int one = 1;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket", errno);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((unsigned short)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind", errno);
    if (listen(lfd, 4096) < 0) die("listen", errno);

    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    int r = io_uring_queue_init_params(4096, &ring, &p);
    if (r < 0) die("io_uring_queue_init", -r);

    size_t ringsz = NBUF * sizeof(struct io_uring_buf);
    bufs = mmap(NULL, ringsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufmem = malloc((size_t)NBUF * BUFSZ);
    if (bufs == MAP_FAILED || !bufmem) die("buffers", ENOMEM);
    io_uring_buf_ring_init(bufs);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)bufs, .ring_entries = NBUF, .bgid = GROUP};
    r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0) die("io_uring_register_buf_ring", -r);
    for (unsigned i = 0; i < NBUF; i++)
        io_uring_buf_ring_add(bufs, bufmem + (size_t)i * BUFSZ, BUFSZ, i, io_uring_buf_ring_mask(NBUF), (int)i);
    io_uring_buf_ring_advance(bufs, NBUF);

    arm_accept();
    for (;;) {
        r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR && r != -EBUSY) die("io_uring_submit_and_wait", -r);
        struct io_uring_cqe *c;
        unsigned head_, seen = 0;
        io_uring_for_each_cqe(&ring, head_, c) {
            seen++;
            unsigned long long d = io_uring_cqe_get_data64(c);
            int fd = (int)(d & 0xffffffffu);
            switch (d >> 32) {
            case ACCEPT:
                if (c->res >= 0) {
                    if (c->res >= MAXFD) { close(c->res); break; }
                    setsockopt(c->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(c->res);
                }
                if (!(c->flags & IORING_CQE_F_MORE)) arm_accept();
                break;
            case RECV: on_recv(fd, c); break;
            case SEND: on_send(fd, c->res); break;
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
}

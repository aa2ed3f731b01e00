/* floor.c - the "kernel floor": about the least work an HTTP/1.1 server can
 * do per request, used as the baseline in bench/run.py.
 *
 * Usage: floor PORT [BYTES]   (listens on 127.0.0.1:PORT; replies carry a body
 *                              of BYTES bytes, default 1)
 *
 * One thread, level-triggered epoll, non-blocking accept4, TCP_NODELAY.
 * Requests are only counted, by spotting each "\r\n\r\n" (GETs only, bodies
 * are not understood). All the requests completed by one read are answered
 * by ONE write of as many copies of a fixed reply, so pipelining works. A
 * terminator split across reads is still found: the per-connection count of
 * terminator bytes matched so far is carried to the next read. While a reply
 * is only partly written the connection waits for EPOLLOUT and is not read.
 * Build: gcc -O2 -o floor floor.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The header set vw sends for a static file (same fields, same length within
 * a few bytes), so the floor and vw put the same bytes on the wire and the
 * difference between them is the work of the server, not of the kernel. */
static const char HEAD[] = "HTTP/1.1 200 OK\r\nServer: fl\r\n"
                           "Date: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
                           "Content-Type: application/octet-stream\r\n"
                           "Last-Modified: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
                           "Accept-Ranges: bytes\r\n"
                           "ETag: \"18eba5c1dd0c42a9-1\"\r\n"
                           "Content-Length: %zu\r\n\r\n";
static size_t RLEN;   /* one reply: head and body */
static size_t COPIES; /* replies held, about 1 MiB of them (at least one) */
#define MAXFD 65536

/* The reply repeated COPIES times: any run of owed reply bytes is a slice of it. */
static char *replies;
static char inbuf[65536];
static unsigned char matched[MAXFD]; /* bytes of "\r\n\r\n" matched so far */
static size_t owed[MAXFD];           /* reply bytes not written yet */

static void die(const char *what) { perror(what); exit(1); }

static void drop(int fd) { close(fd); matched[fd] = 0; owed[fd] = 0; }

/* Write owed bytes: 1 = all written, 0 = socket full, -1 = error. */
static int flush(int fd) {
    while (owed[fd]) {
        size_t off = (RLEN - owed[fd] % RLEN) % RLEN; /* owed is a suffix */
        size_t n = RLEN * COPIES - off;
        if (n > owed[fd]) n = owed[fd];
        ssize_t w = write(fd, replies + off, n);
        if (w < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
        owed[fd] -= (size_t)w;
    }
    return 1;
}

static void watch(int ep, int op, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, op, fd, &ev) < 0) die("epoll_ctl");
}

static void on_accept(int ep, int lfd) {
    int one = 1, fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if (fd >= MAXFD) { close(fd); continue; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        watch(ep, EPOLL_CTL_ADD, fd, EPOLLIN);
    }
}

static void on_readable(int ep, int fd) {
    ssize_t n = read(fd, inbuf, sizeof inbuf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { drop(fd); return; }
    size_t requests = 0;
    unsigned m = matched[fd];
    for (ssize_t i = 0; i < n; i++) {
        char c = inbuf[i];
        if (c == "\r\n\r\n"[m]) {
            if (++m == 4) { requests++; m = 0; }
        } else {
            m = c == '\r'; /* a stray '\r' may start the next terminator */
        }
    }
    matched[fd] = (unsigned char)m;
    if (!requests) return;
    owed[fd] = requests * RLEN;
    int r = flush(fd);
    if (r < 0) drop(fd);
    else if (r == 0) watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
}

static void on_writable(int ep, int fd) {
    int r = flush(fd);
    if (r < 0) drop(fd);
    else if (r > 0) watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
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
    if (!replies) die("malloc");
    for (size_t i = 0; i < COPIES; i++) {
        memcpy(replies + i * RLEN, head, hlen);
        memset(replies + i * RLEN + hlen, 'x', (size_t)body);
    }
    signal(SIGPIPE, SIG_IGN);

    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((unsigned short)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    watch(ep, EPOLL_CTL_ADD, lfd, EPOLLIN);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) on_accept(ep, lfd);
            else if (owed[fd]) on_writable(ep, fd);
            else on_readable(ep, fd);
        }
    }
}

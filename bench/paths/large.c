#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
/* large.c - sending a large file: MODE 0 write(2) from a copy in memory, 1 head with MSG_MORE
 * then sendfile, 2 head then write(2) from a MAP_SHARED mapping of the file (what vw does up
 * to 64 MiB). Partial writes wait for EPOLLOUT. Usage: large PORT FILE MODE.
 * Build: gcc -O2 -o large large.c */
static char head[256]; static size_t hlen, blen; static char *mem, *map; static int ffd, mode;
static size_t sent[65536]; static char inbuf[65536];
static int pump(int fd){ /* 1 done, 0 blocked, -1 err */
  while (sent[fd] < hlen + blen) {
    ssize_t w;
    if (sent[fd] < hlen) w = send(fd, head + sent[fd], hlen - sent[fd], MSG_MORE);
    else { size_t o = sent[fd] - hlen;
      if (mode == 1) { off_t off = o; w = sendfile(fd, ffd, &off, blen - o); }
      else w = write(fd, (mode == 0 ? mem : map) + o, blen - o); }
    if (w < 0) return errno == EAGAIN ? 0 : -1;
    sent[fd] += w;
  }
  return 1;
}
int main(int argc, char **argv){
  int port = atoi(argv[1]); mode = atoi(argv[3]);
  ffd = open(argv[2], O_RDONLY); struct stat st; fstat(ffd, &st); blen = st.st_size;
  hlen = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nServer: fl\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n", blen);
  mem = malloc(blen); pread(ffd, mem, blen, 0);
  map = mmap(0, blen, PROT_READ, MAP_SHARED | MAP_POPULATE, ffd, 0);
  signal(SIGPIPE, SIG_IGN);
  int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, 4);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (void*)&a, sizeof a) < 0) { perror("bind"); return 1; } listen(lfd, 4096);
  int ep = epoll_create1(0); struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}; epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[512];
  for (;;) { int n = epoll_wait(ep, evs, 512, -1);
    for (int i = 0; i < n; i++) { int fd = evs[i].data.fd;
      if (fd == lfd) { int c; while ((c = accept4(lfd, 0, 0, SOCK_NONBLOCK)) >= 0) { setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, 4); sent[c] = (size_t)-1; struct epoll_event e = {.events = EPOLLIN, .data.fd = c}; epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);} continue; }
      if (sent[fd] != (size_t)-1) { int r = pump(fd); if (r < 0) { close(fd); continue; } if (r) { sent[fd] = (size_t)-1; struct epoll_event e = {.events = EPOLLIN, .data.fd = fd}; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);} continue; }
      ssize_t r = read(fd, inbuf, sizeof inbuf); if (r < 0 && errno == EAGAIN) continue; if (r <= 0) { close(fd); continue; }
      sent[fd] = 0; int p = pump(fd); if (p < 0) { close(fd); continue; }
      if (p) sent[fd] = (size_t)-1; else { struct epoll_event e = {.events = EPOLLOUT, .data.fd = fd}; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e); }
    } }
}

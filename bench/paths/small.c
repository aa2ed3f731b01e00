/* small.c - which kernel path sends a mid-size static response cheapest? A floor-like server
 * (python/vw/benchmark/floor.c) that answers every read with one response of BYTES
 * bytes of body, sent a way chosen by MODE:
 *   0  writev(head, body) from memory (one copy; what floor.c does)
 *   1  send(head, MSG_MORE) + sendfile from FILE (or from a memfd holding the body)
 *   2  sendfile of a file holding head and body (one call)
 *   3  sendmsg(MSG_ZEROCOPY) from memory (completions are never read: shows its cost only)
 *   4  send(head, MSG_MORE) + tee(body pipe -> pipe) + splice(pipe -> socket)   <- vw uses this
 *   5  write(head) into the pipe + tee(body) + one splice
 *   6  tee(pipe holding head and body) + splice (the head fixed: not usable with a real Date)
 * Usage: small PORT BYTES MODE [SNDBUF [FILE]]. Assumes one request per read (wrk without
 * pipelining) and closes a connection whose response does not go out whole, so it is only for
 * bodies that fit the socket buffer (up to ~128 KiB here). Build: gcc -O2 -o small small.c
 * Measure with measure.sh (see README.md). */
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
#include <sys/uio.h>
#include <unistd.h>
static const char HEAD[] = "HTTP/1.1 200 OK\r\nServer: fl\r\n"
  "Date: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
  "Content-Type: application/octet-stream\r\n"
  "Last-Modified: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
  "Accept-Ranges: bytes\r\n"
  "ETag: \"18eba5c1dd0c42a9-1\"\r\n"
  "Content-Length: %zu\r\n\r\n";
static char head[512]; static size_t hlen, blen; static char *body; static int bodyfd; static int mode; static int sndbuf;
static int srcp[2]; static long eagain, partial;
static char inbuf[65536];
static void sig(int s){ fprintf(stderr,"eagain=%ld partial=%ld\n",eagain,partial); exit(0);}
/* simple: one request per read assumed (non-pipelined bench) */
static int reply(int fd){
  if (mode==0){ struct iovec v[2]={{head,hlen},{body,blen}}; ssize_t w=writev(fd,v,2); if(w<0){eagain++;return -1;} if((size_t)w<hlen+blen){partial++; return -1;} return 0;}
  if (mode==1){ ssize_t w=send(fd,head,hlen,MSG_MORE); if(w!=(ssize_t)hlen){partial++;return -1;} off_t o=0; w=sendfile(fd,bodyfd,&o,blen); if(w!=(ssize_t)blen){partial++;return -1;} return 0;}
  if (mode==2){ off_t o=0; ssize_t w=sendfile(fd,bodyfd,&o,hlen+blen); if(w!=(ssize_t)(hlen+blen)){partial++;return -1;} return 0;}
  if (mode==3){ struct iovec v[2]={{head,hlen},{body,blen}}; struct msghdr m={.msg_iov=v,.msg_iovlen=2}; ssize_t w=sendmsg(fd,&m,MSG_ZEROCOPY); if(w!=(ssize_t)(hlen+blen)){partial++;return -1;} return 0;}
  if (mode==4){ static int p[2]={-1,-1}; if(p[0]<0){pipe(p); fcntl(p[0],F_SETPIPE_SZ,1<<20);} ssize_t w=send(fd,head,hlen,MSG_MORE); ssize_t t=tee(srcp[0],p[1],blen,0); if(t!=(ssize_t)blen){partial++;return -1;} w=splice(p[0],0,fd,0,blen,SPLICE_F_MOVE); if(w!=(ssize_t)blen){partial++;return -1;} return 0;}
  if (mode==5||mode==6){ static int p[2]={-1,-1}; if(p[0]<0){pipe(p); fcntl(p[0],F_SETPIPE_SZ,1<<20);} size_t tot=hlen+blen;
    if(mode==5){ if(write(p[1],head,hlen)!=(ssize_t)hlen) return -1; if(tee(srcp[0],p[1],blen,0)!=(ssize_t)blen) return -1;}
    else { if(tee(srcp[0],p[1],tot,0)!=(ssize_t)tot) return -1;}
    ssize_t w=splice(p[0],0,fd,0,tot,SPLICE_F_MOVE); if(w!=(ssize_t)tot){partial++;return -1;} return 0;}
  return -1;
}
int main(int argc,char**argv){
  int port=atoi(argv[1]); blen=atol(argv[2]); mode=atoi(argv[3]); sndbuf=argc>4?atoi(argv[4]):0;
  hlen=snprintf(head,sizeof head,HEAD,blen);
  body=malloc(blen); memset(body,'x',blen);
  bodyfd=memfd_create("b",0); if(argc>5) bodyfd=open(argv[5],O_RDONLY); else write(bodyfd,body,blen);
  if(mode==2){ bodyfd=open("/tmp/small-head-body",O_RDWR|O_CREAT|O_TRUNC,0600); write(bodyfd,head,hlen); write(bodyfd,body,blen);}
  if(mode==6){ pipe(srcp); fcntl(srcp[0],F_SETPIPE_SZ,1<<20); write(srcp[1],head,hlen); write(srcp[1],body,blen);}
  if(mode==4||mode==5){ pipe(srcp); fcntl(srcp[0],F_SETPIPE_SZ,1<<20); write(srcp[1],body,blen);}
  signal(SIGPIPE,SIG_IGN); signal(SIGTERM,sig); signal(SIGINT,sig);
  int one=1,lfd=socket(AF_INET,SOCK_STREAM|SOCK_NONBLOCK,0);
  setsockopt(lfd,SOL_SOCKET,SO_REUSEADDR,&one,4);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port),.sin_addr.s_addr=htonl(INADDR_LOOPBACK)};
  if(bind(lfd,(void*)&a,sizeof a)<0){perror("bind");return 1;} listen(lfd,4096);
  int ep=epoll_create1(0); struct epoll_event ev={.events=EPOLLIN,.data.fd=lfd}; epoll_ctl(ep,EPOLL_CTL_ADD,lfd,&ev);
  struct epoll_event evs[512];
  for(;;){int n=epoll_wait(ep,evs,512,-1);
    for(int i=0;i<n;i++){int fd=evs[i].data.fd;
      if(fd==lfd){int c; while((c=accept4(lfd,0,0,SOCK_NONBLOCK))>=0){setsockopt(c,IPPROTO_TCP,TCP_NODELAY,&one,4); if(mode==3) setsockopt(c,SOL_SOCKET,SO_ZEROCOPY,&one,4); if(sndbuf) setsockopt(c,SOL_SOCKET,SO_SNDBUF,&sndbuf,4); struct epoll_event e={.events=EPOLLIN,.data.fd=c}; epoll_ctl(ep,EPOLL_CTL_ADD,c,&e);} continue;}
      ssize_t r=read(fd,inbuf,sizeof inbuf); if(r<0&&errno==EAGAIN) continue; if(r<=0){close(fd);continue;}
      if(reply(fd)<0) close(fd);
    }}
}

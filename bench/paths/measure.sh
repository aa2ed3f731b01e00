#!/bin/bash
# measure.sh PATH SECONDS -- SERVER COMMAND...: server on CPU 0 (listening on 127.0.0.1:8099),
# wrk -t1 -c${C:-300} on CPU 1; prints requests and server CPU µs per request (utime+stime of
# the server's whole process tree over the run, from /proc).
path=$1; dur=$2; shift 3
taskset -c 0 "$@" 2>/dev/null & pid=$!
sleep 1
cpu() { python3 -c "
import os,sys
def kids(p):
    out=[p]
    for e in os.listdir('/proc'):
        if e.isdigit():
            try: s=open(f'/proc/{e}/stat').read()
            except OSError: continue
            if int(s.rsplit(')',1)[1].split()[1])==p: out+=kids(int(e))
    return out
t=0
for p in kids($pid):
    f=open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split(); t+=int(f[11])+int(f[12])
print(t)"; }
taskset -c 1 wrk -t1 -c${C:-300} -d2 http://127.0.0.1:8099$path >/dev/null
t0=$(cpu)
out=$(taskset -c 1 wrk -t1 -c${C:-300} -d$dur http://127.0.0.1:8099$path)
t1=$(cpu)
req=$(echo "$out" | awk '/requests in/{print $1}')
kill $pid; wait $pid 2>/dev/null
echo "$* : req=$req us/req=$(python3 -c "print(round(($t1-$t0)*10000/$req,2))") $(echo "$out"|grep -i 'socket errors\|Non-2xx')"

"""The benchmark harness `vw bench` runs (bench/run.py runs it too, with the repository's app
servers and file-size runs from bench/harness/):

- runner: one run: its Config, the servers found, each measured, rounds interleaved, the report;
- servers: the servers it can measure (floor, vw, nginx with sendfile on and off, h2o) and the
  docroot they serve; nginx.conf.tmpl and h2o.conf.tmpl;
- floor: floor.c, compiled on first use;
- process: the server under test as a process: started pinned, checked, stopped;
- wrk: wrk's command (pipeline.lua for pipelined runs) and its output parsed;
- cpu: the CPU time of a process tree and how busy a core was, from /proc;
- report: medians and ratios, results.md and results.json;
- chart: results.png; command: `vw bench` itself; tools: BenchError, finding programs.
"""

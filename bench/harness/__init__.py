"""The benchmark harness as the repository runs it (bench/run.py): vw.benchmark (what `vw bench`
runs, shipped in the wheel) with what only the repository's benchmarks use:

- apps: the app servers (vw's three interfaces, and granian, uvicorn, bjoern, socketify from
  the peers' venv that install-peers.sh makes), run on the apps in bench/apps/;
- files: the sized files of the file-size runs (/100b, /4k, /64k, /4m), and the floor's body
  as long as the file a path names;
- servers: RepoServers, vw.benchmark's servers with those added, built and run in bench/;
- cli: bench/run.py's options and main.
"""

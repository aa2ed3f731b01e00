-- wrk script: every write carries DEPTH pipelined GETs of the URL's path.
-- Usage: wrk -s bench/pipeline.lua http://127.0.0.1:PORT/1b
-- wrk counts each response, so "requests" below are single HTTP requests.

local DEPTH = 16
local batch

init = function(args)
   local one = wrk.format("GET", wrk.path)
   batch = string.rep(one, DEPTH)
end

request = function()
   return batch
end

-- bench/paced.lua - wrk script for bench/api.sh's paced load: each
-- connection waits WRK_PAUSE_MS (default 100), jittered uniformly over
-- half to one and a half of it, after each answer before its next
-- request, as a client polling on a timer does. The jitter keeps the
-- connections from marching in step, which would make every request
-- queue behind the others at once.
--
-- WRK_VARY_AFTER=1 appends a different &after= to each request (0..4999),
-- so that no two recent requests ask for the same history page and none
-- is answered from the daemon's reply cache: the cost of a cold query.
local pause = tonumber(os.getenv("WRK_PAUSE_MS") or "100")
local vary = os.getenv("WRK_VARY_AFTER") == "1"
local n = 0

function setup(thread)
    thread:set("seed", math.random(1, 1000000))
end

function init(args)
    math.randomseed(seed)
end

function request()
    if not vary then
        return wrk.format()
    end
    n = n + 1
    return wrk.format(nil, wrk.path .. "&after=" .. ((seed + 7 * n) % 5000))
end

function delay()
    return math.floor(pause * (0.5 + math.random()))
end

-- bench/paced.lua - wrk script for bench/api.sh's paced load: each
-- connection waits WRK_PAUSE_MS (default 100), jittered uniformly over
-- half to one and a half of it, after each answer before its next
-- request, as a client polling on a timer does. The jitter keeps the
-- connections from marching in step, which would make every request
-- queue behind the others at once.
local pause = tonumber(os.getenv("WRK_PAUSE_MS") or "100")

function setup(thread)
    thread:set("seed", math.random(1, 1000000))
end

function init(args)
    math.randomseed(seed)
end

function delay()
    return math.floor(pause * (0.5 + math.random()))
end

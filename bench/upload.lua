-- wrk request script for the big-up scenario: POST a 1 MiB body on every request.
-- (run.sh appends report.lua for the done() hook.)
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 65536)   -- 1,048,576 bytes
wrk.headers["Content-Type"] = "application/octet-stream"

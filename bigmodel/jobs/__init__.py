"""The job platform: records and their Lua state scripts, leases, presence, the job-type table, execution."""

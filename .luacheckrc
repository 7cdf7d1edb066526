std = "max"
max_line_length = 120
exclude_files = { "sandbox/node_modules", "bench/node_modules", "build" }
files["spec"] = { std = "+busted" }
globals = { "vim", "ngx" }

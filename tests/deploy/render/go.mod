module shardserve/tests/deploy/render

go 1.19

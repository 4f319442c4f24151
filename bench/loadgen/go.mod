module github.com/betracehq/betrace/bench/loadgen

go 1.26

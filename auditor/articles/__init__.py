"""The audit's article checks, one module per group: `lists` (Art. 9, 11, 12: what every served
list shows), `user_controls` (Art. 15), `minors` (Art. 16), `filing` (Art. 22), `log` (Art. 23),
`complaints` (Art. 26). Each holds the trial that drives the server for its articles and the
checks: pure functions over recorded responses, each returning a `CheckResult`."""

"""The audit's article checks, one module per group: `lists` (Art. 9, Art. 11, Art. 12: what every served
list shows), `user_controls` (Art. 17 (draft 15)), `minors` (Art. 18 (draft 16)), `filing` (Art. 26 (draft 22)), `log` (Art. 28 (draft 24)),
`complaints` (Art. 22 (draft 26)). Each holds the trial that drives the server for its articles and the
checks: pure functions over recorded responses, each returning a `CheckResult`."""

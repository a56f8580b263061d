package diagnose

// CauseGrowing: from two snapshots, the process's CLOSE_WAIT count rises.
const CauseGrowing = "growing"

// growingCause is the growing cause, which findings name from growth.
var growingCause = register(&Cause{
	ID:    CauseGrowing,
	Title: "CLOSE_WAIT count growing",
	Help: "From two snapshots (`--sample`, `watch`, `agent` or `--history`): more of the process's sockets entered CLOSE_WAIT than left it. " +
		"This is the urgent one: closewait estimates when the process will reach its fd limit at the current rate. " +
		"It appears beside the finding that says why.",
	rank: 0,
	fix:  closeFix,
})

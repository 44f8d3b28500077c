package main

import "syscall"

// killWithParent makes the kernel kill a node process when the harness dies, so that no node
// outlives an interrupted run.
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

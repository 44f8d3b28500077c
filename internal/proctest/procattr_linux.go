package proctest

import "syscall"

// killWithParent makes the kernel kill a child process when the test binary dies, so that no
// node outlives a test that timed out or crashed.
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

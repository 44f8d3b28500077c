package e2e

import "syscall"

// killWithParent makes the kernel kill a child process when the test binary dies, so that an
// etcd is not left running after a test timeout or crash.
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

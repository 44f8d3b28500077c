//go:build !linux

package proctest

import "syscall"

// killWithParent: only Linux can tie a child's life to its parent's; elsewhere the test's
// cleanup alone kills the child.
func killWithParent() *syscall.SysProcAttr { return nil }

//go:build !linux

package main

import "syscall"

// killWithParent has nothing to ask of the kernel outside Linux: a node process outlives a
// harness that dies without stopping it.
func killWithParent() *syscall.SysProcAttr { return nil }

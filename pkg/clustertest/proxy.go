package clustertest

import (
	"io"
	"net"
	"sync"
)

// proxy forwards TCP connections from a local listener to one target. Pause closes every open
// connection and holds new ones without reading from them (as a frozen process would) until
// Resume. It owns its goroutines: close stops them and waits.
type proxy struct {
	target string
	l      net.Listener

	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed by Resume
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

func newProxy(target string) (*proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{target: target, l: l, conns: map[net.Conn]bool{}, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Go(p.accept)
	return p, nil
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track records c; false once the proxy is closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// serve waits while the proxy is paused (the client's bytes go unread), then forwards.
func (p *proxy) serve(c net.Conn) {
	defer p.untrack(c)
	p.mu.Lock()
	resume := p.resume
	p.mu.Unlock()
	<-resume // closed by Resume, or by close
	p.mu.Lock()
	closed := p.closed || !p.conns[c]
	p.mu.Unlock()
	if closed {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	var g sync.WaitGroup
	g.Go(func() { io.Copy(up, c); up.Close() })
	io.Copy(c, up)
	c.Close()
	g.Wait()
}

// pause cuts every open connection and holds new ones until resume.
func (p *proxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused || p.closed {
		return
	}
	p.paused = true
	p.resume = make(chan struct{})
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) unpause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return
	}
	p.paused = false
	close(p.resume)
}

// close stops the proxy and waits for its goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	if p.paused {
		p.paused = false
		close(p.resume)
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}

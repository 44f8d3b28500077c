package lint

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NodeCommand is the package the images build and run, relative to the repository root.
const NodeCommand = "cmd/clusterkit-node"

// Node is what the deployment files must agree with, read from the source of the node command
// and of pkg/clusterkit, so that the checks follow the code instead of a copy of it.
type Node struct {
	// Settings are the environment variables the command reads.
	Settings map[string]bool
	// EtcdPortOffset: an embedded etcd serves clients on the HTTP port + EtcdPortOffset and
	// peers on the HTTP port + 2*EtcdPortOffset.
	EtcdPortOffset int
	// DrainTimeout bounds the hand-over on SIGTERM with DRAIN_ON_SIGTERM=true.
	DrainTimeout time.Duration
	// HealthCheckFlag is the flag that makes the command probe GET /health, with its dash.
	HealthCheckFlag string
}

// ReadNode reads the node's settings and port rules from the repository at root.
func ReadNode(root string) (*Node, error) {
	n := &Node{Settings: map[string]bool{}}
	mainFile := filepath.Join(root, NodeCommand, "main.go")
	f, err := parser.ParseFile(token.NewFileSet(), mainFile, nil, 0)
	if err != nil {
		return nil, err
	}
	ast.Inspect(f, func(x ast.Node) bool {
		lit, ok := x.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if id, ok := lit.Type.(*ast.Ident); !ok || id.Name != "setting" {
			return true
		}
		for _, e := range lit.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok && identName(kv.Key) == "env" {
				if s, err := stringLit(kv.Value); err == nil {
					n.Settings[s] = true
				}
			}
		}
		return false
	})
	if len(n.Settings) == 0 {
		return nil, fmt.Errorf("%s: no setting{env: ...} literal found", mainFile)
	}
	consts := constants(f)
	if n.DrainTimeout, err = durationConst(consts, "drainTimeout"); err != nil {
		return nil, fmt.Errorf("%s: %w", mainFile, err)
	}
	flagName, err := stringLit(consts["healthCheckFlag"])
	if err != nil {
		return nil, fmt.Errorf("%s: healthCheckFlag: %w", mainFile, err)
	}
	n.HealthCheckFlag = "-" + flagName

	optionsFile := filepath.Join(root, "pkg", "clusterkit", "options.go")
	g, err := parser.ParseFile(token.NewFileSet(), optionsFile, nil, 0)
	if err != nil {
		return nil, err
	}
	lit, ok := constants(g)["embeddedPortOffset"].(*ast.BasicLit)
	if !ok || lit.Kind != token.INT {
		return nil, fmt.Errorf("%s: no integer constant embeddedPortOffset", optionsFile)
	}
	if n.EtcdPortOffset, err = strconv.Atoi(lit.Value); err != nil {
		return nil, fmt.Errorf("%s: embeddedPortOffset: %w", optionsFile, err)
	}
	return n, nil
}

// EtcdPorts are the ports of the embedded etcd of a node whose HTTP API is on httpPort.
func (n *Node) EtcdPorts(httpPort int) (client, peer int) {
	return httpPort + n.EtcdPortOffset, httpPort + 2*n.EtcdPortOffset
}

// constants maps the names of the file's constants to their value expressions.
func constants(f *ast.File) map[string]ast.Expr {
	out := map[string]ast.Expr{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					out[name.Name] = vs.Values[i]
				}
			}
		}
	}
	return out
}

// durationConst evaluates a constant of the form N * time.Second (or Minute).
func durationConst(consts map[string]ast.Expr, name string) (time.Duration, error) {
	bin, ok := consts[name].(*ast.BinaryExpr)
	if !ok || bin.Op != token.MUL {
		return 0, fmt.Errorf("constant %s is not N * time.Unit", name)
	}
	lit, ok := bin.X.(*ast.BasicLit)
	sel, ok2 := bin.Y.(*ast.SelectorExpr)
	if !ok || !ok2 || lit.Kind != token.INT {
		return 0, fmt.Errorf("constant %s is not N * time.Unit", name)
	}
	v, err := strconv.Atoi(lit.Value)
	if err != nil {
		return 0, err
	}
	units := map[string]time.Duration{"Second": time.Second, "Minute": time.Minute}
	u, ok := units[sel.Sel.Name]
	if !ok {
		return 0, fmt.Errorf("constant %s: unit time.%s", name, sel.Sel.Name)
	}
	return time.Duration(v) * u, nil
}

func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, error) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", fmt.Errorf("not a string literal")
	}
	return strconv.Unquote(lit.Value)
}

// splitHostPort splits host:port with a numeric port.
func splitHostPort(addr string) (host string, port int, err error) {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err = strconv.Atoi(addr[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has no port number", addr)
	}
	return addr[:i], port, nil
}

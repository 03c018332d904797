package backend

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// A tokenHeld is made only by tokenStore.withLock, so a function that takes one runs
// under the name's token lock: the compiler checks the parameter, this test the one
// place that makes the value.
func TestTokenHeldOnlyFromWithLock(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			ast.Inspect(d, func(n ast.Node) bool {
				lit, isLit := n.(*ast.CompositeLit)
				if !isLit {
					return true
				}
				if id, isID := lit.Type.(*ast.Ident); isID && id.Name == "tokenHeld" {
					if !ok || fd.Name.Name != "withLock" || name != "tokenstore.go" {
						t.Errorf("%s: a tokenHeld is made outside tokenStore.withLock", fset.Position(lit.Pos()))
					}
				}
				return true
			})
		}
	}
}

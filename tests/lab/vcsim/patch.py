"""Two fixes to govmomi 0.24's simulator that pyvmomi >= 8 needs, applied to a private copy.

- Fetch of an unset property (vm.snapshot, eventManager.latestEvent) indexed an empty
  MissingSet and panicked (govmomi issue 3337): answer an empty FetchResponse instead.
- QueryPerfCounter(counterId=...) wrote into a nil response.
- RetrievePropertiesEx ignored maxObjects and had no ContinueRetrievePropertiesEx: pages
  of maxObjects with a token, as vCenter answers, so a client's paging is exercised.
"""

import sys
from pathlib import Path

FIXES = [
    ("property_collector.go",
        "\tif len(obj.PropSet) == 0 {\n\t\tfault := obj.MissingSet[0].Fault",
        "\tif len(obj.PropSet) == 0 {\n\t\tif len(obj.MissingSet) == 0 {\n"
        "\t\t\tbody.Res = &internal.FetchResponse{}\n\t\t\treturn body\n\t\t}\n"
        "\t\tfault := obj.MissingSet[0].Fault",
    ),
    ("performance_manager.go",
        "\tbody.Res.Returnval = make([]types.PerfCounterInfo, len(req.CounterId))",
        "\tbody.Res = new(types.QueryPerfCounterResponse)\n"
        "\tbody.Res.Returnval = make([]types.PerfCounterInfo, len(req.CounterId))",
    ),
    ("property_collector.go",
        "\t\tres.Objects = objects\n\t\tbody.Res = &types.RetrievePropertiesExResponse{",
        "\t\tres.Objects = objects\n\t\tpage(res, r.Options.MaxObjects)\n"
        "\t\tbody.Res = &types.RetrievePropertiesExResponse{",
    ),
]
PAGING = """
var pages = struct {
	sync.Mutex
	next int
	rest map[string]*types.RetrieveResult
	size map[string]int32
}{rest: map[string]*types.RetrieveResult{}, size: map[string]int32{}}

// page keeps what is beyond the first max objects under a token.
func page(res *types.RetrieveResult, max int32) {
	if max <= 0 || len(res.Objects) <= int(max) {
		return
	}
	pages.Lock()
	defer pages.Unlock()
	pages.next++
	token := fmt.Sprintf("page-%d", pages.next)
	pages.rest[token] = &types.RetrieveResult{Objects: res.Objects[max:]}
	pages.size[token] = max
	res.Objects, res.Token = res.Objects[:max], token
}

func (pc *PropertyCollector) ContinueRetrievePropertiesEx(ctx *Context,
\tr *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	pages.Lock()
	res, max := pages.rest[r.Token], pages.size[r.Token]
	delete(pages.rest, r.Token)
	delete(pages.size, r.Token)
	pages.Unlock()
	if res == nil {
		body.Fault_ = Fault("", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	page(res, max)
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *res}
	return body
}
"""

package = Path(sys.argv[1])
for name, old, new in FIXES:
    path = package / name
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"vcsim patch: {name} does not have the expected code; is govmomi still 0.24?")
    path.write_text(text.replace(old, new))
pc = package / "property_collector.go"
pc.write_text(pc.read_text().replace('import (\n', 'import (\n\t"fmt"\n', 1) + PAGING)

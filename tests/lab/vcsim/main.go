// vcsim for vigil's lab: govmomi's simulator (Debian's 0.24, patched by tests/lab/setup.sh)
// with an inventory sized by flags, served over TLS with a given certificate on a given
// loopback address. It prints its URL on one line and stops on SIGTERM.
//
// States the simulator cannot reach through the API are set at start: -disconnect takes
// host names whose connection state becomes "disconnected", -alarm takes
// entity=severity pairs (red or yellow) added as triggered alarms.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS key (PEM)")
	username := flag.String("username", "user", "the only valid user name")
	password := flag.String("password", "pass", "its password")
	dc := flag.Int("dc", 1, "datacenters")
	cluster := flag.Int("cluster", 1, "clusters per datacenter")
	clusterHost := flag.Int("host", 3, "hosts per cluster")
	standalone := flag.Int("standalone-host", 1, "standalone hosts per datacenter")
	vm := flag.Int("vm", 2, "VMs per resource pool (one per cluster and per standalone host)")
	ds := flag.Int("ds", 1, "datastores")
	disconnect := flag.String("disconnect", "", "comma-separated host names to show disconnected")
	alarms := flag.String("alarm", "", "comma-separated entity=red|yellow triggered alarms")
	flag.Parse()

	model := simulator.VPX()
	model.Datacenter, model.Cluster, model.ClusterHost = *dc, *cluster, *clusterHost
	model.Host, model.Machine, model.Datastore = *standalone, *vm, *ds
	if err := model.Create(); err != nil {
		log.Fatalf("create: %v", err)
	}
	defer model.Remove()
	if err := mutate(*disconnect, *alarms); err != nil {
		log.Fatal(err)
	}

	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	model.Service.Listen = &url.URL{Host: *addr, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()
	defer server.Close()
	u := *server.URL
	u.User = nil
	fmt.Println(u.String())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

func byName(kind, name string) mo.Entity {
	for _, e := range simulator.Map.All(kind) {
		if e.Entity().Name == name {
			return e
		}
	}
	return nil
}

func mutate(disconnect, alarms string) error {
	for _, name := range split(disconnect) {
		host, ok := byName("HostSystem", name).(*simulator.HostSystem)
		if !ok {
			return fmt.Errorf("no host %q", name)
		}
		host.Runtime.ConnectionState = types.HostSystemConnectionStateDisconnected
	}
	for i, pair := range split(alarms) {
		name, severity, _ := strings.Cut(pair, "=")
		var entity mo.Entity
		for _, kind := range []string{"HostSystem", "VirtualMachine", "Datastore", "ClusterComputeResource", "Datacenter"} {
			if entity = byName(kind, name); entity != nil {
				break
			}
		}
		if entity == nil {
			return fmt.Errorf("no entity %q", name)
		}
		me := entity.Entity()
		status := types.ManagedEntityStatus(severity)
		me.TriggeredAlarmState = append(me.TriggeredAlarmState, types.AlarmState{
			Key:           fmt.Sprintf("alarm-%d.%s", i+1, me.Self.Value),
			Entity:        me.Self,
			Alarm:         types.ManagedObjectReference{Type: "Alarm", Value: fmt.Sprintf("alarm-%d", i+1)},
			OverallStatus: status,
			Time:          time.Now(),
		})
		me.OverallStatus = status
	}
	return nil
}

func split(list string) []string {
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}

package uplink

import (
	"net/http"
	"net/url"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	winhttp                                 = windows.NewLazySystemDLL("winhttp.dll")
	procWinHttpGetDefaultProxyConfiguration = winhttp.NewProc("WinHttpGetDefaultProxyConfiguration")
	procGlobalFree                          = windows.NewLazySystemDLL("kernel32.dll").NewProc("GlobalFree")
)

// winhttpProxyInfo is WINHTTP_PROXY_INFO.
type winhttpProxyInfo struct {
	accessType uint32
	proxy      *uint16
	bypass     *uint16
}

const winhttpAccessTypeNamedProxy = 3

// systemProxy on Windows is the machine's WinHTTP proxy (`netsh winhttp
// set proxy`, or imported from IE settings by `netsh winhttp import proxy
// source=ie`), which is what a LocalSystem service is meant to use; without
// one, HTTPS_PROXY from the environment.
func systemProxy(r *http.Request) (*url.URL, error) {
	f := winhttpProxy()
	if f == nil {
		return http.ProxyFromEnvironment(r)
	}
	return f(r.URL)
}

// winhttpProxy reads the setting once: it changes rarely and the agent's
// service restarts pick up a change.
var winhttpProxy = sync.OnceValue(func() func(*url.URL) (*url.URL, error) {
	if procWinHttpGetDefaultProxyConfiguration.Find() != nil {
		return nil
	}
	var info winhttpProxyInfo
	r, _, _ := procWinHttpGetDefaultProxyConfiguration.Call(uintptr(unsafe.Pointer(&info)))
	if r == 0 {
		return nil
	}
	proxy, bypass := windows.UTF16PtrToString(info.proxy), windows.UTF16PtrToString(info.bypass)
	for _, p := range []*uint16{info.proxy, info.bypass} {
		if p != nil {
			procGlobalFree.Call(uintptr(unsafe.Pointer(p))) // WinHTTP allocates them with GlobalAlloc
		}
	}
	if info.accessType != winhttpAccessTypeNamedProxy {
		return nil
	}
	return parseWinHTTPProxy(proxy, bypass)
})

package host

//go:generate go run golang.org/x/sys/windows/mkwinsyscall -output zsyscall_windows.go syscall_windows.go

// x/sys/windows wraps WTSEnumerateSessions but not WTSQuerySessionInformation.
//sys wtsQuerySessionInformation(server windows.Handle, session uint32, class uint32, buf **uint16, n *uint32) (err error) = wtsapi32.WTSQuerySessionInformationW

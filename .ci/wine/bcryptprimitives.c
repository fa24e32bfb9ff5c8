/* Stand-in for Windows' bcryptprimitives.dll under Debian's Wine 8, which lacks
 * it: the Go runtime (1.21+) loads ProcessPrng from it at start. RtlGenRandom
 * (SystemFunction036) gives the same kind of bytes. Test use only. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}

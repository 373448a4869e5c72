# strace2hex.awk — turns `strace -xx -e write=all -e read=all` output of netlink traffic into one
# netlink message per line: `> HEX` sent by the program, `< HEX` received from the kernel.
# A syscall's buffers are concatenated and split at each nlmsghdr's nlmsg_len (aligned to 4).
# MSG_PEEK reads are skipped: the same bytes come again in the real read.

function flush(   i, len, j, line) {
  if (dir != "" && nbytes > 0) {
    i = 0
    while (i + 4 <= nbytes) {
      len = hexval(bytes[i+3]) * 16777216 + hexval(bytes[i+2]) * 65536 + hexval(bytes[i+1]) * 256 + hexval(bytes[i])
      if (len < 16) break                      # padding after the last message (e.g. iproute2)
      if (i + len > nbytes) len = nbytes - i   # truncated by the syscall's size: keep what came
      line = ""
      for (j = i; j < i + len; j++) line = line bytes[j]
      print dir " " line
      i += int((len + 3) / 4) * 4
    }
  }
  dir = ""; nbytes = 0
}
function hexval(h,   d) {
  d = "0123456789abcdef"
  return (index(d, substr(h, 1, 1)) - 1) * 16 + index(d, substr(h, 2, 1)) - 1
}
/^([0-9]+ +)?(sendmsg|sendto)\(/              { flush(); dir = ">"; next }
/^([0-9]+ +)?(recvmsg|recvfrom)\(/ {
  flush()
  dir = ($0 ~ /MSG_PEEK/) ? "" : "<"
  next
}
/^ \| [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]  / {
  if (dir == "") next
  hex = substr($0, 11, 49)
  n = split(hex, parts, /[ ]+/)
  for (k = 1; k <= n; k++) if (parts[k] ~ /^[0-9a-f][0-9a-f]$/) bytes[nbytes++] = parts[k]
  next
}
END { flush() }

#include "errors.h"

#include <cerrno>

namespace emmap::posix {

Errc errc_from_errno(int e) noexcept {
  switch (e) {
    case 0: return Errc::ok;
    case EPERM: return Errc::eperm;
    case ENOENT: return Errc::enoent;
    case EINTR: return Errc::eintr;
    case EIO: return Errc::eio;
    case ENXIO: return Errc::enxio;
    case EBADF: return Errc::ebadf;
    case EAGAIN: return Errc::eagain;
    case ENOMEM: return Errc::enomem;
    case EACCES: return Errc::eacces;
    case EFAULT: return Errc::efault;
    case EBUSY: return Errc::ebusy;
    case EEXIST: return Errc::eexist;
    case EXDEV: return Errc::exdev;
    case ENODEV: return Errc::enodev;
    case ENOTDIR: return Errc::enotdir;
    case EISDIR: return Errc::eisdir;
    case EINVAL: return Errc::einval;
    case ENFILE: return Errc::enfile;
    case EMFILE: return Errc::emfile;
    case ETXTBSY: return Errc::etxtbsy;
    case EFBIG: return Errc::efbig;
    case ENOSPC: return Errc::enospc;
    case ESPIPE: return Errc::espipe;
    case EROFS: return Errc::erofs;
    case EMLINK: return Errc::emlink;
    case ERANGE: return Errc::erange;
    case EDEADLK: return Errc::edeadlk;
    case ENAMETOOLONG: return Errc::enametoolong;
    case ENOLCK: return Errc::enolck;
    case ENOSYS: return Errc::enosys;
    case ELOOP: return Errc::eloop;
    case EOVERFLOW: return Errc::eoverflow;
    case EOPNOTSUPP: return Errc::eopnotsupp;
#if defined(ENOTSUP) && ENOTSUP != EOPNOTSUPP
    case ENOTSUP: return Errc::eopnotsupp;  // distinct values on some BSDs
#endif
#ifdef EDQUOT
    case EDQUOT: return Errc::edquot;
#endif
#ifdef ESTALE
    case ESTALE: return Errc::estale;
#endif
#ifdef ECANCELED
    case ECANCELED: return Errc::ecanceled;
#endif
#ifdef EOWNERDEAD
    case EOWNERDEAD: return Errc::eownerdead;
#endif
#ifdef ENOTRECOVERABLE
    case ENOTRECOVERABLE: return Errc::enotrecoverable;
#endif
    default: return Errc::eunknown;
  }
}

Error last_error() noexcept {
  const int e = errno;
  return Error(errc_from_errno(e), e);
}

}  // namespace emmap::posix

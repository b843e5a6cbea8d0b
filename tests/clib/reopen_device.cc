// Opens a device URI N times in one process and prints, per attempt, "ok TARGET" or
// "DeviceError KIND: message": a failed open must release its connection (a server that serves one
// client at a time then still answers the next attempt). Usage: reopen_device URI N
#include <cstdlib>
#include <iostream>
#include <string>

#include "dlavm/device.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: reopen_device URI N\n";
    return 2;
  }
  for (int k = 0; k < std::atoi(argv[2]); ++k) {
    try {
      auto dev = dlavm::open_device(argv[1]);
      std::cout << "ok " << dev->target() << "\n";
    } catch (const dlavm::DeviceError& e) {
      std::cout << "DeviceError " << e.kind() << ": " << e.what() << "\n";
    }
  }
  return 0;
}

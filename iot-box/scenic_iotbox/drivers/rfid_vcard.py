"""A virtual contactless card for the vsmartcard ``vpcd`` reader driver.

pcscd with Debian's ``vsmartcard-vpcd`` shows a "Virtual PCD" reader that
listens on TCP (port 35963 by default: ``/etc/reader.conf.d/vpcd``,
``CHANNELID 0x8C7B``; one more port per extra slot).  A card "is on the
reader" while a client is connected to that port.  The vpcd protocol:
every message is a 2-byte big-endian length then that many bytes.

* length 1 is a control byte from the reader: 0 power off, 1 power on,
  2 reset (no answer), 4 get ATR (answer: the ATR);
* anything longer is a command APDU; the answer is the response APDU.

This card answers GET DATA UID (``FF CA 00 00 Le``) with its UID + 90 00,
like a contactless reader does for a MIFARE card, and 6D 00 to anything
else.  (Debian's own ``vicc`` crashes on that APDU.)

    python -m scenic_iotbox.drivers.rfid_vcard --uid 04A1B2C3D4
"""

import argparse
import logging
import socket
import struct
import sys
import threading

__all__ = ['VirtualCard', 'contactless_atr', 'DEFAULT_PORT']

logger = logging.getLogger(__name__)

DEFAULT_PORT = 35963
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4


def contactless_atr(standard=0x03, card_name=0x0001):
    """The ATR a PC/SC contactless reader makes up for a storage card
    (PC/SC part 3 §3.1.3.2.3; default: ISO 14443 A part 3, MIFARE 1K)."""
    historical = bytes((0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06,
        standard)) + card_name.to_bytes(2, 'big') + bytes(4)
    head = bytes((0x3B, 0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for byte in head[1:]:
        tck ^= byte
    return head + bytes((tck,))


class VirtualCard:
    """A card with ``uid`` on the vpcd reader at ``host``:``port``.

    ``insert()`` connects (the card appears), ``remove()`` disconnects.
    The socket has TCP_NODELAY and TCP_QUICKACK: without QUICKACK each
    small answer waits for the delayed ACK, about 40 ms per APDU."""

    def __init__(self, uid, host='127.0.0.1', port=DEFAULT_PORT, atr=None):
        self.uid = bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid)
        self.host = host
        self.port = port
        self.atr = atr or contactless_atr()
        self.apdus = []             # commands received (for tests)
        self.powered = False
        self._sock = None
        self._thread = None
        self._stop = threading.Event()

    @property
    def inserted(self):
        return self._thread is not None and self._thread.is_alive()

    def insert(self, timeout=5.0):
        """Connect to vpcd; raises OSError if it does not listen."""
        if self.inserted:
            return self
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack(sock)
        sock.settimeout(0.2)        # so remove() is noticed
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True,
            name='vpcd-card')
        self._thread.start()
        return self

    def remove(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    close = remove

    def __enter__(self):
        return self.insert()

    def __exit__(self, *exc):
        self.remove()

    @staticmethod
    def _quickack(sock):
        # Linux clears QUICKACK after some ACKs: set it again after reads.
        quickack = getattr(socket, 'TCP_QUICKACK', None)
        if quickack is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
            except OSError:
                pass

    def _recv_exact(self, size):
        data = b''
        while len(data) < size:
            if self._stop.is_set():
                return None
            try:
                chunk = self._sock.recv(size - len(data))
            except socket.timeout:
                continue
            if not chunk:
                return None         # vpcd closed the connection
            data += chunk
        self._quickack(self._sock)
        return data

    def _serve(self):
        try:
            while not self._stop.is_set():
                header = self._recv_exact(2)
                if header is None:
                    break
                (size,) = struct.unpack('>H', header)
                message = self._recv_exact(size) if size else b''
                if message is None:
                    break
                answer = self.handle(message)
                if answer is not None:
                    self._sock.sendall(struct.pack('>H', len(answer))
                        + answer)
        except OSError as error:
            logger.info('virtual card: connection ended: %s', error)
        finally:
            try:
                self._sock.close()
            except OSError:
                pass

    def handle(self, message):
        """The answer to one vpcd message (None: no answer)."""
        if len(message) == 1:
            control = message[0]
            if control == CTRL_ATR:
                return self.atr
            if control in (CTRL_ON, CTRL_RESET):
                self.powered = True
            elif control == CTRL_OFF:
                self.powered = False
            return None
        self.apdus.append(message)
        if len(message) >= 4 and message[:4] == b'\xFF\xCA\x00\x00':
            le = message[4] if len(message) >= 5 else 0
            if le and le < len(self.uid):
                return bytes((0x6C, len(self.uid)))
            return self.uid + b'\x90\x00'
        if len(message) >= 4 and message[0] == 0xFF:
            return b'\x6A\x81'      # other reader pseudo-APDUs
        return b'\x6D\x00'          # INS not supported


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='A virtual contactless card on the vpcd reader.')
    parser.add_argument('--uid', default='04A1B2C3D4E5F6')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    card = VirtualCard(args.uid, args.host, args.port)
    print(f'Card {card.uid.hex().upper()}: Enter inserts/removes it, '
        'Ctrl-D quits.', flush=True)
    try:
        for _ in sys.stdin:
            if card.inserted:
                card.remove()
                print('removed', flush=True)
            else:
                card.insert()
                print('inserted', flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        card.remove()
    return 0


if __name__ == '__main__':
    sys.exit(main())

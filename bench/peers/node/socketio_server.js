// Peer: Socket.IO 4 with connection state recovery (the in-memory adapter keeps the packets a
// reconnecting client missed). Events: `m` is broadcast to everyone, `join` enters rooms, `p` is
// sent to one room and acknowledged. Usage: node socketio_server.js PORT  (prints READY)
"use strict";
const { createServer } = require("http");
const { Server } = require("socket.io");

const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  pingInterval: 600000,
  pingTimeout: 60000,
  perMessageDeflate: false,
  connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
});
io.on("connection", (socket) => {
  socket.on("m", (data) => io.emit("m", data));
  socket.on("join", (rooms, ack) => { socket.join(rooms); if (ack) ack(true); });
  socket.on("p", (data, ack) => { io.to(data.room).emit("m", data); if (ack) ack(true); });
});
http.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("READY"));

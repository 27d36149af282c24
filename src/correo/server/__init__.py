"""correo.server"""

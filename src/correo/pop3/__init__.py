"""correo.pop3"""

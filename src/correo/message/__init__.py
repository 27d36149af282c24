"""correo.message"""

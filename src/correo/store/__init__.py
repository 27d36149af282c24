"""correo.store"""
